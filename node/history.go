package node

import (
	"context"
	"time"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
)

// historyEvents returns the publisher the edges send call events to: the
// core NATS subjects (callgate.calls.<region>.<kind>, for dashboards and
// subscribers) and the call history stream. The recorder is closed, its
// queued events written, before the store closes.
func (n *Node) historyEvents(live calls.Publisher) (calls.Publisher, error) {
	rec, err := callhistory.NewRecorder(n.st.NC, n.st, callhistory.RecorderOptions{Log: n.log, Metrics: callhistory.NewMetrics(n.reg)})
	if err != nil {
		return nil, err
	}
	n.closers = append(n.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rec.Close(ctx)
	})
	return callhistory.Tee{live, rec}, nil
}

// callHistory reads the call history for the API.
func (n *Node) callHistory() *callhistory.Reader { return callhistory.NewReader(n.st, n.log) }
