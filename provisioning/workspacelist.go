package provisioning

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"
)

// ListWorkspaces returns every workspace sorted by id (admin: the console's
// workspace list). Keys that are not workspace ids (_meta.*) are skipped.
func (s *Service) ListWorkspaces(ctx context.Context) ([]Workspace, error) {
	out := []Workspace{}
	err := s.scanKV(ctx, s.st.Workspaces, func(e jetstream.KeyValueEntry) error {
		if !ValidID(e.Key()) {
			return nil
		}
		var ws Workspace
		if err := json.Unmarshal(e.Value(), &ws); err != nil {
			return fmt.Errorf("decode %s/%s: %w", s.st.Workspaces.Bucket(), e.Key(), err)
		}
		out = append(out, ws)
		return nil
	})
	if err != nil {
		return nil, storeErr("list workspaces", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
