package node

import (
	"context"
	"fmt"
	"time"
)

// layoutMigrationTimeout bounds the start-up migration of the store's
// layout (provisioning.MigrateLayout): a million numbers take minutes.
const layoutMigrationTimeout = 30 * time.Minute

// migrateLayout indexes records an older version wrote, before the API
// serves listings.
func (n *Node) migrateLayout(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, layoutMigrationTimeout)
	defer cancel()
	if _, err := n.svc.MigrateLayout(ctx); err != nil {
		return fmt.Errorf("node: migrate the store layout: %w", err)
	}
	return nil
}
