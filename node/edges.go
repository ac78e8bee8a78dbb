package node

import (
	"context"
	"net/http"
)

// startEdges starts the SIP and webhook edges (wired as they land).
func (n *Node) startEdges(ctx context.Context, extra map[string]http.Handler) error {
	return nil
}

func (n *Node) edgesReady() bool { return true }

func (n *Node) stopEdges() {}

func (n *Node) regions() any { return []any{} }

// Drain stops taking new calls and waits for active ones until ctx ends.
func (n *Node) Drain(ctx context.Context) { n.drainEdges(ctx) }

func (n *Node) drainEdges(ctx context.Context) {}
