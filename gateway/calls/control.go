package calls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Commands to a running call (transfer, DTMF) from any node: the API
// node publishes a request on callgate.callctl.<workspace>; every node
// subscribes, and only the node (and the edge on it) that holds the call
// answers. No answer within the timeout means no node holds it.

// Control operations.
const (
	OpTransfer = "transfer"
	OpDTMF     = "dtmf"
)

// ControlSubject is the subject prefix of call commands (+ workspace).
const ControlSubject = "callgate.callctl."

// Command is one request to a running call.
type Command struct {
	Op        string `json:"op"`
	CallID    string `json:"call_id"`
	Workspace string `json:"workspace"`
	// Transfer.
	To   string `json:"to,omitempty"`   // tel:/sip: URI, E.164 number or agent id
	Mode string `json:"mode,omitempty"` // "blind" or "bridge"
	// DTMF.
	Digits string `json:"digits,omitempty"` // 0-9 * # A-D, w = 0.5 s pause
}

// Reply is the holding node's answer. Status is an HTTP status for the
// API to return (202 accepted, 409 wrong state, 422 refused by policy,
// 502 the carrier refused); Error says why when it is not 2xx.
type Reply struct {
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
	// Detail is operation-specific (e.g. the transfer's mode as carried out).
	Detail map[string]string `json:"detail,omitempty"`
}

// ControlHandler handles a command for a call it holds; ok false: not
// its call (another handler or node may hold it).
type ControlHandler func(ctx context.Context, cmd Command) (r Reply, ok bool)

// ErrCallNotHere is returned by Send when no node answered: the call is
// not running (ended, never existed, or its node is gone).
var ErrCallNotHere = errors.New("calls: no node holds this call")

// ControlBus carries call commands between nodes.
type ControlBus struct {
	nc      *nats.Conn
	log     *slog.Logger
	Timeout time.Duration // how long Send waits for the holding node; default 2 s

	mu       sync.RWMutex
	handlers []ControlHandler
	sub      *nats.Subscription
}

// NewControlBus returns a bus on nc; Start subscribes.
func NewControlBus(nc *nats.Conn, log *slog.Logger) *ControlBus {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ControlBus{nc: nc, log: log, Timeout: 2 * time.Second}
}

// Handle adds a handler (an edge that holds calls). Handlers are asked in
// the order added until one holds the call.
func (b *ControlBus) Handle(h ControlHandler) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.handlers = append(b.handlers, h)
	b.mu.Unlock()
}

// Start subscribes to every workspace's commands.
func (b *ControlBus) Start() error {
	sub, err := b.nc.Subscribe(ControlSubject+"*", b.serve)
	if err != nil {
		return fmt.Errorf("calls: control subscribe: %w", err)
	}
	b.sub = sub
	// The server has the subscription once the flush returns: a command
	// sent right after Start reaches this node.
	if err := b.nc.Flush(); err != nil {
		return fmt.Errorf("calls: control subscribe: %w", err)
	}
	return nil
}

// Close unsubscribes.
func (b *ControlBus) Close() {
	if b != nil && b.sub != nil {
		_ = b.sub.Unsubscribe()
	}
}

const maxCommandBytes = 8 << 10

func (b *ControlBus) serve(m *nats.Msg) {
	if len(m.Data) > maxCommandBytes || m.Reply == "" {
		return
	}
	var cmd Command
	if json.Unmarshal(m.Data, &cmd) != nil || cmd.CallID == "" || ControlSubject+cmd.Workspace != m.Subject {
		return // the subject names the workspace; a command for another is ignored
	}
	b.mu.RLock()
	hs := b.handlers
	b.mu.RUnlock()
	// Handlers may place calls (transfer); run them off NATS's delivery goroutine.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
		defer cancel()
		for _, h := range hs {
			r, ok := h(ctx, cmd)
			if !ok {
				continue
			}
			out, _ := json.Marshal(r)
			if err := m.Respond(out); err != nil {
				b.log.Warn("calls: control reply failed", "call_id", cmd.CallID, "op", cmd.Op, "err", err)
			}
			return
		}
	}()
}

// Send delivers cmd to the node that holds the call and returns its
// reply; ErrCallNotHere when no node holds it.
func (b *ControlBus) Send(ctx context.Context, cmd Command) (Reply, error) {
	data, err := json.Marshal(cmd)
	if err != nil {
		return Reply{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.Timeout)
		defer cancel()
	}
	msg, err := b.nc.RequestWithContext(ctx, ControlSubject+cmd.Workspace, data)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
			return Reply{}, ErrCallNotHere
		}
		return Reply{}, fmt.Errorf("calls: control request: %w", err)
	}
	var r Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return Reply{}, fmt.Errorf("calls: control reply: %w", err)
	}
	return r, nil
}
