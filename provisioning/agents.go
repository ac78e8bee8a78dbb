package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

func agentKey(ws, id string) string { return ws + "." + id }

// AgentInput is the body of POST/PUT /v1/agents.
type AgentInput struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Endpoints    []Endpoint `json:"endpoints"`
	Media        string     `json:"media,omitempty"`
	MessagingURL string     `json:"messaging_url,omitempty"`
	SourceCIDRs  []string   `json:"source_cidrs,omitempty"`
	AgentCallSettings
}

// Endpoint as given by a client.
type Endpoint struct {
	Region string `json:"region"`
	URI    string `json:"uri"`
}

// validate checks in and replaces each endpoint URI by its canonical
// form (check is Service.CheckEndpoint).
func (in *AgentInput) validate(v *ValidationError, check func(string) (string, error)) {
	in.Endpoints = append([]Endpoint(nil), in.Endpoints...) // the caller's slice is not changed
	if in.ID != "" && !ValidID(in.ID) {
		v.Add("id", "must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")
	}
	if strings.TrimSpace(in.Name) == "" {
		v.Add("name", "required")
	} else if len(in.Name) > 200 {
		v.Add("name", "must be at most 200 characters")
	}
	if len(in.Endpoints) == 0 {
		v.Add("endpoints", "at least one endpoint is required")
	}
	if len(in.Endpoints) > 32 {
		v.Add("endpoints", "at most 32 endpoints")
	}
	for i, ep := range in.Endpoints {
		f := "endpoints[" + strconv.Itoa(i) + "]"
		if !ValidID(ep.Region) {
			v.Add(f+".region", "must be a region name such as us-east")
		}
		if uri, err := check(ep.URI); err != nil {
			v.Add(f+".uri", "%v", err)
		} else {
			in.Endpoints[i].URI = uri
		}
	}
	switch in.Media {
	case "", "direct", "relay":
	default:
		v.Add("media", `must be "direct" or "relay"`)
	}
	if in.MessagingURL != "" && !strings.HasPrefix(in.MessagingURL, "http://") && !strings.HasPrefix(in.MessagingURL, "https://") {
		v.Add("messaging_url", "must be an http:// or https:// URL")
	}
	in.SourceCIDRs = checkSourceCIDRs(v, in.SourceCIDRs)
	in.AgentCallSettings.validate(v)
}

// CreateAgent creates an agent (id generated when empty).
func (s *Service) CreateAgent(ctx context.Context, p Principal, in AgentInput) (Agent, error) {
	v := &ValidationError{}
	in.validate(v, s.CheckEndpoint)
	if err := v.Err(); err != nil {
		return Agent{}, err
	}
	if in.ID == "" {
		in.ID = "ag_" + randomToken("")[:16]
	}
	now := s.now().UTC()
	a := Agent{ID: in.ID, Name: in.Name, Endpoints: toRouting(in.Endpoints), Media: in.Media, MessagingURL: in.MessagingURL, SourceCIDRs: in.SourceCIDRs, AgentCallSettings: in.AgentCallSettings, CreatedAt: now, UpdatedAt: now, Workspace: p.Workspace}
	b, _ := json.Marshal(a)
	if _, err := s.st.Agents.Create(ctx, agentKey(p.Workspace, a.ID), b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Agent{}, errorf(ErrConflict, "agent %q already exists", a.ID)
		}
		return Agent{}, storeErr("create agent", err)
	}
	a.Workspace = ""
	return a, nil
}

// GetAgent returns an agent of the workspace.
func (s *Service) GetAgent(ctx context.Context, p Principal, id string) (Agent, error) {
	var a Agent
	if !ValidID(id) {
		return a, errorf(ErrNotFound, "agent %q not found", id)
	}
	if _, err := getJSON(ctx, s.st.Agents, agentKey(p.Workspace, id), &a); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return a, errorf(ErrNotFound, "agent %q not found", id)
		}
		return a, storeErr("get agent", err)
	}
	a.Workspace = ""
	return a, nil
}

// ListAgents returns the workspace's agents sorted by id.
func (s *Service) ListAgents(ctx context.Context, p Principal) ([]Agent, error) {
	out := []Agent{}
	lister, err := s.st.Agents.ListKeysFiltered(ctx, p.Workspace+".>")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return out, nil
		}
		return nil, storeErr("list agents", err)
	}
	for k := range lister.Keys() {
		var a Agent
		if _, err := getJSON(ctx, s.st.Agents, k, &a); err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return nil, storeErr("list agents", err)
		}
		a.Workspace = ""
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// UpdateAgent replaces an agent's name, endpoints and settings.
func (s *Service) UpdateAgent(ctx context.Context, p Principal, id string, in AgentInput) (Agent, error) {
	if !ValidID(id) {
		return Agent{}, errorf(ErrNotFound, "agent %q not found", id)
	}
	if in.ID == "" {
		in.ID = id
	}
	v := &ValidationError{}
	in.validate(v, s.CheckEndpoint)
	if in.ID != id {
		v.Add("id", "does not match the agent in the path")
	}
	if err := v.Err(); err != nil {
		return Agent{}, err
	}
	var a Agent
	rev, err := getJSON(ctx, s.st.Agents, agentKey(p.Workspace, id), &a)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Agent{}, errorf(ErrNotFound, "agent %q not found", id)
		}
		return Agent{}, storeErr("update agent", err)
	}
	a.Name, a.Endpoints, a.Media, a.MessagingURL, a.UpdatedAt = in.Name, toRouting(in.Endpoints), in.Media, in.MessagingURL, s.now().UTC()
	a.SourceCIDRs = in.SourceCIDRs
	a.AgentCallSettings = in.AgentCallSettings
	a.Workspace = p.Workspace
	b, _ := json.Marshal(a)
	if _, err := s.st.Agents.Update(ctx, agentKey(p.Workspace, id), b, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return Agent{}, errorf(ErrConflict, "agent %q changed concurrently; retry", id)
		}
		return Agent{}, storeErr("update agent", err)
	}
	a.Workspace = ""
	return a, nil
}

// DeleteAgent deletes an agent with no numbers assigned. It is safe
// against assignments racing it (see deleteAgent).
func (s *Service) DeleteAgent(ctx context.Context, p Principal, id string) error {
	return s.deleteAgent(ctx, p, id)
}
