package provisioning

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/routing"
)

func toRouting(eps []Endpoint) []routing.Endpoint {
	out := make([]routing.Endpoint, len(eps))
	for i, e := range eps {
		out[i] = routing.Endpoint{Region: e.Region, URI: e.URI}
	}
	return out
}

// IntegrationDecoder turns a stored integration record into the data
// plane's view (decrypting its webhook secrets). Nil means integrations
// are not part of the snapshot.
type IntegrationDecoder func(key string, value []byte) (routing.Integration, bool)

// Syncer watches the KV buckets and keeps a routing.Table current. Every
// change is applied to an in-memory mirror and a new snapshot is built
// (debounced), so a write on any node routes on every node within a
// fraction of a second. While NATS is away the last snapshot stays.
type Syncer struct {
	Table        *routing.Table
	Debounce     time.Duration
	Integrations IntegrationDecoder
	// OnSnapshot is called after each swap (metrics: snapshot age).
	OnSnapshot func(*routing.Snapshot)

	mu           sync.Mutex
	numbers      map[string]routing.Number
	agents       map[string]routing.Agent
	forwards     map[string]routing.Forward
	integrations map[string]routing.Integration
	ready        chan struct{}
	readyOnce    sync.Once
}

// Ready is closed once the first complete snapshot is in the table.
func (y *Syncer) Ready() <-chan struct{} {
	y.init()
	return y.ready
}

func (y *Syncer) init() {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.ready == nil {
		y.ready = make(chan struct{})
		y.numbers = map[string]routing.Number{}
		y.agents = map[string]routing.Agent{}
		y.forwards = map[string]routing.Forward{}
		y.integrations = map[string]routing.Integration{}
	}
}

type kvUpdate struct {
	bucket string
	entry  jetstream.KeyValueEntry // nil marks "initial values done" for bucket
}

// Run watches until ctx ends. numbers, agents, forwarding and
// integrations are the four buckets.
func (y *Syncer) Run(ctx context.Context, numbers, agents, forwarding, integrations jetstream.KeyValue) error {
	y.init()
	if y.Debounce == 0 {
		y.Debounce = 20 * time.Millisecond
	}
	updates := make(chan kvUpdate, 1024)
	buckets := []jetstream.KeyValue{numbers, agents, forwarding, integrations}
	for _, kv := range buckets {
		kv := kv
		w, err := kv.WatchAll(ctx)
		if err != nil {
			return err
		}
		go func() {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case e, ok := <-w.Updates():
					if !ok {
						return
					}
					select {
					case updates <- kvUpdate{bucket: kv.Bucket(), entry: e}:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
	}
	initial := map[string]bool{}
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-updates:
			if u.entry == nil {
				initial[u.bucket] = true
				if len(initial) == len(buckets) {
					y.publish()
				}
				continue
			}
			y.apply(u.bucket, u.entry, numbers.Bucket(), agents.Bucket(), forwarding.Bucket())
			if len(initial) < len(buckets) {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(y.Debounce)
				fire = timer.C
			}
		case <-fire:
			timer, fire = nil, nil
			y.publish()
		}
	}
}

func (y *Syncer) apply(bucket string, e jetstream.KeyValueEntry, nb, ab, fb string) {
	y.mu.Lock()
	defer y.mu.Unlock()
	del := e.Operation() != jetstream.KeyValuePut
	key := e.Key()
	switch bucket {
	case nb:
		if del {
			delete(y.numbers, key)
			return
		}
		var r numberRecord
		if json.Unmarshal(e.Value(), &r) != nil || r.Status == StatusPending {
			delete(y.numbers, key)
			return
		}
		y.numbers[key] = routing.Number{
			E164: r.PhoneNumber, Workspace: r.WorkspaceID, Carrier: r.Carrier, Origin: r.Origin,
			Status: r.Status, AgentID: r.AgentID, VoiceRegion: r.VoiceRegion, IntegrationID: r.IntegrationID,
		}
	case ab:
		if del {
			delete(y.agents, key)
			return
		}
		var a Agent
		if json.Unmarshal(e.Value(), &a) != nil {
			return
		}
		if a.Workspace == "" {
			a.Workspace, _, _ = strings.Cut(key, ".")
		}
		y.agents[key] = routing.Agent{ID: a.ID, Workspace: a.Workspace, Name: a.Name, Endpoints: a.Endpoints, Media: a.Media, MessagingURL: a.MessagingURL}
	case fb:
		if del {
			delete(y.forwards, key)
			return
		}
		var f Forward
		if json.Unmarshal(e.Value(), &f) != nil {
			return
		}
		y.forwards[key] = routing.Forward{Workspace: f.Workspace, BusinessNumber: f.BusinessNumber, GatewayNumber: f.GatewayNumber}
	default: // integrations
		if del || y.Integrations == nil {
			delete(y.integrations, key)
			return
		}
		if in, ok := y.Integrations(key, e.Value()); ok {
			y.integrations[key] = in
		}
	}
}

func (y *Syncer) publish() {
	y.mu.Lock()
	b := routing.NewBuilder()
	for _, a := range y.agents {
		b.AddAgent(a)
	}
	for _, n := range y.numbers {
		b.AddNumber(n)
	}
	for _, f := range y.forwards {
		b.AddForward(f)
	}
	for _, i := range y.integrations {
		b.AddIntegration(i)
	}
	y.mu.Unlock()
	snap := b.Build()
	y.Table.Store(snap)
	if y.OnSnapshot != nil {
		y.OnSnapshot(snap)
	}
	y.readyOnce.Do(func() { close(y.ready) })
}
