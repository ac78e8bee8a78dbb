package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/phone"
)

// CreateForwarding registers a business line that forwards to one of the
// workspace's gateway numbers. A business line belongs to one workspace.
func (s *Service) CreateForwarding(ctx context.Context, p Principal, business, gateway string) (Forward, error) {
	v := &ValidationError{}
	b164, err := phone.Normalize(business, "")
	if err != nil {
		v.Add("business_number", "%v", err)
	}
	g164, err := phone.Normalize(gateway, "")
	if err != nil {
		v.Add("gateway_number", "%v", err)
	}
	if err == nil && b164 == g164 {
		v.Add("business_number", "must differ from gateway_number")
	}
	if err := v.Err(); err != nil {
		return Forward{}, err
	}
	if _, err := s.GetNumber(ctx, p, g164); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Forward{}, invalid("gateway_number", "%s is not a number of this workspace", g164)
		}
		return Forward{}, err
	}
	// A number held in callgate is its holder's line: another workspace
	// registering it would take the calls forwarded from it.
	var held numberRecord
	if _, err := getJSON(ctx, s.st.Numbers, numberKey(b164), &held); err == nil {
		if held.WorkspaceID != p.Workspace {
			return Forward{}, invalid("business_number", "%s is a number held in callgate by another workspace; register a line your workspace owns", b164)
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return Forward{}, storeErr("create forwarding", err)
	}
	f := Forward{BusinessNumber: b164, GatewayNumber: g164, Workspace: p.Workspace, CreatedAt: s.now().UTC()}
	ref, err := s.indexAdd(ctx, indexForwarding, p.Workspace, numberKey(b164))
	if err != nil {
		return Forward{}, err
	}
	b, _ := json.Marshal(f)
	if _, err := s.st.Forwarding.Create(ctx, numberKey(b164), b); err != nil {
		s.indexUndo(ctx, ref)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Forward{}, errorf(ErrConflict, "business line %s is already registered", b164)
		}
		return Forward{}, storeErr("create forwarding", err)
	}
	f.Workspace = ""
	return f, nil
}

// ListForwarding lists the workspace's business lines, reading only the
// workspace's own (index.go).
func (s *Service) ListForwarding(ctx context.Context, p Principal) ([]Forward, error) {
	keys, err := s.indexed(ctx, indexForwarding, p.Workspace)
	if err != nil {
		return nil, err
	}
	out := []Forward{}
	err = getEach(ctx, s.st.Forwarding, keys, func(e jetstream.KeyValueEntry) error {
		var f Forward
		if err := json.Unmarshal(e.Value(), &f); err != nil {
			return fmt.Errorf("decode %s/%s: %w", s.st.Forwarding.Bucket(), e.Key(), err)
		}
		if f.Workspace == p.Workspace {
			f.Workspace = ""
			out = append(out, f)
		}
		return nil
	})
	if err != nil {
		return nil, storeErr("list forwarding", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].BusinessNumber < out[j].BusinessNumber })
	return out, nil
}

// DeleteForwarding removes a business line registration.
func (s *Service) DeleteForwarding(ctx context.Context, p Principal, business string) error {
	b164, err := phone.Normalize(business, "")
	if err != nil { // a path that names no business line
		return errorf(ErrNotFound, "business line %q is not registered in this workspace (%v)", business, err)
	}
	var f Forward
	rev, err := getJSON(ctx, s.st.Forwarding, numberKey(b164), &f)
	if err != nil || f.Workspace != p.Workspace {
		if err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
			return errorf(ErrNotFound, "business line %s is not registered in this workspace", b164)
		}
		return storeErr("delete forwarding", err)
	}
	irev := s.indexStampOf(ctx, indexForwarding, p.Workspace, numberKey(b164))
	if err := s.st.Forwarding.Delete(ctx, numberKey(b164), jetstream.LastRevision(rev)); err != nil {
		return storeErr("delete forwarding", err)
	}
	s.indexRemove(ctx, indexForwarding, p.Workspace, numberKey(b164), irev)
	return nil
}
