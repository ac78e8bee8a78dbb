package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/phone"
)

// Deleting an agent races assigning numbers to it. Both sides write first
// and read second: DeleteAgent marks the agent (DeletingAt, by
// compare-and-set) and then looks for numbers assigned to it; an
// assignment writes the number and then reads the agent. Each key is
// linearizable, so at least one side sees the other: the delete refuses
// (409, numbers assigned) or the assignment undoes itself (4xx). No number
// is ever left assigned to a deleted agent.

// assignableAgent checks that agent id of workspace ws exists and is not
// being deleted.
func (s *Service) assignableAgent(ctx context.Context, ws, id string) error {
	var a Agent
	if _, err := getJSON(ctx, s.st.Agents, agentKey(ws, id), &a); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return invalid("agent_id", "agent %q does not exist in this workspace", id)
		}
		return storeErr("get agent", err)
	}
	if a.DeletingAt != nil {
		return errorf(ErrConflict, "agent %q is being deleted; assign the number to another agent", id)
	}
	return nil
}

// confirmAssignment runs after rec (at rev) was written with rec.AgentID:
// if that agent is gone or going, the assignment is undone (the number is
// left unassigned) and the reason returned.
func (s *Service) confirmAssignment(ctx context.Context, rec numberRecord, rev uint64) error {
	agent := rec.AgentID
	cause := s.assignableAgent(ctx, rec.WorkspaceID, agent)
	if cause == nil {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	key := numberKey(rec.PhoneNumber)
	for attempt := 0; attempt < 50; attempt++ {
		if attempt > 0 {
			var err error
			if rev, err = getJSON(ctx, s.st.Numbers, key, &rec); err != nil {
				if errors.Is(err, jetstream.ErrKeyNotFound) {
					return cause
				}
				break
			}
		}
		if rec.AgentID != agent || rec.Status == StatusReleasing {
			return cause // reassigned meanwhile, or going away
		}
		rec.AgentID = ""
		b, _ := json.Marshal(rec)
		_, err := s.st.Numbers.Update(ctx, key, b, rev)
		if err == nil {
			return cause
		}
		if !isRevisionConflict(err) {
			break
		}
	}
	s.log.Error("provisioning: a number may be left assigned to a deleted agent", "number", phone.Mask(rec.PhoneNumber), "agent", agent)
	return cause
}

// deleteAgent marks the agent deleting, refuses (and unmarks) if any
// number of the workspace, claimed ones included, is assigned to it, and
// deletes it otherwise.
func (s *Service) deleteAgent(ctx context.Context, p Principal, id string) error {
	if !ValidID(id) {
		return errorf(ErrNotFound, "agent %q not found", id)
	}
	key := agentKey(p.Workspace, id)
	for attempt := 0; attempt < 20; attempt++ {
		var a Agent
		rev, err := getJSON(ctx, s.st.Agents, key, &a)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				if attempt > 0 {
					return nil // a twin delete finished it
				}
				return errorf(ErrNotFound, "agent %q not found", id)
			}
			return storeErr("delete agent", err)
		}
		if a.DeletingAt == nil {
			now := s.now().UTC()
			a.DeletingAt = &now
			b, _ := json.Marshal(a)
			if rev, err = s.st.Agents.Update(ctx, key, b, rev); err != nil {
				if isRevisionConflict(err) {
					continue
				}
				return storeErr("delete agent", err)
			}
		}
		if s.crashed("agent:marked") {
			return errSimulatedCrash
		}
		assigned, err := s.numbersOfAgent(ctx, p.Workspace, id)
		if err != nil {
			s.unmarkAgent(ctx, key)
			return err
		}
		if len(assigned) > 0 {
			s.unmarkAgent(ctx, key)
			return errorf(ErrConflict, "agent %q has %d number(s) assigned (%s); reassign or release them first", id, len(assigned), strings.Join(assigned, ", "))
		}
		// Its SIP credentials go first: a credential created while the
		// agent was being marked removes itself (CreateSIPCredential).
		if err := s.revokeAgentCredentials(ctx, p.Workspace, id); err != nil {
			s.unmarkAgent(ctx, key)
			return err
		}
		if err := s.st.Agents.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
			if isRevisionConflict(err) {
				continue // changed meanwhile (an update): look again
			}
			return storeErr("delete agent", err)
		}
		return nil
	}
	s.unmarkAgent(ctx, key)
	return errorf(ErrConflict, "agent %q is changing too fast to be deleted; retry", id)
}

// unmarkAgent clears DeletingAt after a refused delete.
func (s *Service) unmarkAgent(ctx context.Context, key string) {
	ctx = context.WithoutCancel(ctx)
	for attempt := 0; attempt < 50; attempt++ {
		var a Agent
		rev, err := getJSON(ctx, s.st.Agents, key, &a)
		if err != nil || a.DeletingAt == nil {
			return
		}
		a.DeletingAt = nil
		b, _ := json.Marshal(a)
		if _, err := s.st.Agents.Update(ctx, key, b, rev); err == nil || !isRevisionConflict(err) {
			if err != nil {
				s.log.Warn("provisioning: agent left marked deleting; recovery clears it", "agent", key, "err", err)
			}
			return
		}
	}
}

// numbersOfAgent lists the numbers of ws assigned to agent id, in any
// state (claims of purchases in progress included).
func (s *Service) numbersOfAgent(ctx context.Context, ws, id string) ([]string, error) {
	recs, _, err := s.allNumbers(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range recs {
		if r.WorkspaceID == ws && r.usesAgent(id) {
			out = append(out, r.PhoneNumber)
		}
	}
	sort.Strings(out)
	return out, nil
}
