package node

import (
	"context"

	"github.com/callgate/callgate/audit"
)

// startAudit opens the audit log on the node's store and runs its
// flushing of summarised failed key uses until ctx ends.
func (n *Node) startAudit(ctx context.Context) *audit.Log {
	l := audit.New(n.st, audit.Options{Log: n.log, Metrics: audit.NewMetrics(n.reg)})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		l.Run(ctx)
	}()
	return l
}
