package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// change is applied to an in-memory mirror and a new snapshot is swapped
// in (debounced), so a write on any node routes on every node within a
// fraction of a second. While NATS is away the last snapshot stays.
//
// Changes of numbers, forwarding and integrations derive the next
// snapshot from the last one (routing.Snapshot.WithNumbers: the cost of
// the changes, not of the table); a change of agents, or an overlay
// grown past CompactAfter, rebuilds it whole.
type Syncer struct {
	Table        *routing.Table
	Debounce     time.Duration
	Integrations IntegrationDecoder
	// OnSnapshot is called after each swap (metrics: snapshot age).
	OnSnapshot func(*routing.Snapshot)
	// StallCheck is how often a watcher is compared with its bucket; two
	// checks in a row behind restart it (default 1s).
	StallCheck time.Duration
	// Restarts counts watchers replaced after a stall.
	Restarts atomic.Int64
	// CompactAfter: once the numbers changed since the last full build
	// exceed this and 1/16 of the table, the next snapshot is built in
	// full (default 1024).
	CompactAfter int
	// FullBuilds counts snapshots built in full, the first included.
	FullBuilds atomic.Int64
	// Endpoints checks a stored endpoint URI and returns the form to use
	// on the wire (default CanonicalEndpointURI; a node passes
	// Service.CheckEndpoint). An endpoint it refuses (stored before the
	// check existed, or written around the API) is left out of the
	// snapshot, so no edge sends a call to it, and logged once.
	Endpoints func(uri string) (string, error)
	// Log receives those warnings (default slog.Default()).
	Log *slog.Logger
	// WorkspaceBucket, when set, is watched for workspace settings
	// (routing hook, limits, outbound policy, webhook secret) decoded
	// by Workspaces (Service.DecodeWorkspace; nil: settings without the
	// secret). CredentialBucket, when set, is watched for agents' SIP
	// credentials. Both are small: a change replaces their whole map in
	// the next snapshot (WithWorkspaces, WithCredentials).
	WorkspaceBucket  jetstream.KeyValue
	Workspaces       WorkspaceDecoder
	CredentialBucket jetstream.KeyValue

	mu           sync.Mutex
	numbers      map[string]routing.Number
	agents       map[string]routing.Agent
	forwards     map[string]routing.Forward
	integrations map[string]routing.Integration
	workspaces   map[string]routing.Workspace
	credentials  map[string]routing.SIPCredential
	wsName       string // WorkspaceBucket's name ("" when not watched)
	credName     string // CredentialBucket's name
	dirtyWS      bool
	dirtyCreds   bool
	ready        chan struct{}
	readyOnce    sync.Once

	// changes since the last publish: number KV key -> its E.164 before
	// (empty: it had none); and whether agents, forwards, integrations changed
	skipped                            map[string]bool // "agent key uri" already logged as skipped
	dirtyNums                          map[string]string
	dirtyAgents, dirtyFwd, dirtyIntegr bool
	last                               *routing.Snapshot // published last; only Run's goroutine
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
		y.workspaces = map[string]routing.Workspace{}
		y.credentials = map[string]routing.SIPCredential{}
		y.dirtyNums = map[string]string{}
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
	if y.StallCheck == 0 {
		y.StallCheck = time.Second
	}
	updates := make(chan kvUpdate, 1024)
	buckets := []jetstream.KeyValue{numbers, agents, forwarding, integrations}
	if y.WorkspaceBucket != nil {
		y.wsName = y.WorkspaceBucket.Bucket()
		buckets = append(buckets, y.WorkspaceBucket)
	}
	if y.CredentialBucket != nil {
		y.credName = y.CredentialBucket.Bucket()
		buckets = append(buckets, y.CredentialBucket)
	}
	for _, kv := range buckets {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			return err
		}
		go y.follow(ctx, kv, w, updates)
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
	switch {
	case bucket == y.wsName && y.wsName != "":
		y.applyWorkspace(key, del, e.Value())
		return
	case bucket == y.credName && y.credName != "":
		y.dirtyCreds = true
		delete(y.credentials, key)
		if !del {
			if c, ok := decodeSIPCredential(e.Value()); ok && c.Username == key {
				y.credentials[key] = c
			}
		}
		return
	}
	switch bucket {
	case nb:
		if _, fwd := y.forwards[key]; fwd {
			y.dirtyFwd = true // a business line's holder may have changed (see liveForward)
		}
		// Before the first snapshot everything is new: no need to track.
		if _, seen := y.dirtyNums[key]; !seen && y.last != nil {
			y.dirtyNums[key] = y.numbers[key].E164
		}
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
			Control: r.Number.routingControl(),
		}
	case ab:
		y.dirtyAgents = true
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
		ra := routing.Agent{ID: a.ID, Workspace: a.Workspace, Name: a.Name, Endpoints: y.checkEndpoints(key, a.Endpoints), Media: a.Media, MessagingURL: a.MessagingURL, SourceCIDRs: a.SourceCIDRs}
		a.AgentCallSettings.routing(&ra)
		y.agents[key] = ra
	case fb:
		y.dirtyFwd = true
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
		y.dirtyIntegr = true
		if del || y.Integrations == nil {
			delete(y.integrations, key)
			return
		}
		if in, ok := y.Integrations(key, e.Value()); ok {
			y.integrations[key] = in
		}
	}
}

// applyWorkspace records a workspace's settings. y.mu held.
func (y *Syncer) applyWorkspace(key string, del bool, value []byte) {
	y.dirtyWS = true
	delete(y.workspaces, key)
	if del || !ValidID(key) { // not a workspace (e.g. _meta.secret_check)
		return
	}
	dec := y.Workspaces
	if dec == nil {
		dec = func(key string, value []byte) (routing.Workspace, bool) { return decodeWorkspace(nil, nil, key, value) }
	}
	if w, ok := dec(key, value); ok {
		y.workspaces[key] = w
	}
}

// liveForward reports whether a business line registration may attribute
// calls: not when the line is a number another workspace holds in
// callgate (registered before that workspace bought or imported it).
// Forwarding and numbers share the key space (E.164 without '+'). y.mu held.
func (y *Syncer) liveForward(key string, f routing.Forward) bool {
	n, held := y.numbers[key]
	return !held || n.Workspace == f.Workspace
}

// checkEndpoints returns the agent's endpoints the data plane may use,
// in their canonical form. y.mu held.
func (y *Syncer) checkEndpoints(key string, eps []routing.Endpoint) []routing.Endpoint {
	check := y.Endpoints
	if check == nil {
		check = CanonicalEndpointURI
	}
	out := make([]routing.Endpoint, 0, len(eps))
	for i, ep := range eps {
		uri, err := check(ep.URI)
		if err == nil && ValidID(ep.Region) {
			out = append(out, routing.Endpoint{Region: ep.Region, URI: uri})
			continue
		}
		if err == nil {
			err = errors.New("region is not a region name")
		}
		if y.skipped == nil {
			y.skipped = map[string]bool{}
		}
		// The URI itself is not logged: it may hold a password.
		if k := key + " " + ep.Region + " " + ep.URI; !y.skipped[k] {
			y.skipped[k] = true
			log := y.Log
			if log == nil {
				log = slog.Default()
			}
			log.Warn("routing: stored agent endpoint is invalid; no call is sent to it (fix it with PUT /v1/agents/{id})",
				"agent", key, "endpoint", i, "region", strconv.QuoteToASCII(ep.Region), "err", err)
		}
	}
	return out
}

func (y *Syncer) publish() {
	compact := y.CompactAfter
	if compact <= 0 {
		compact = 1024
	}
	y.mu.Lock()
	full := y.last == nil || y.dirtyAgents
	if !full {
		over := y.last.Overlay() + len(y.dirtyNums)
		full = over > compact && over > y.last.Len()/16
	}
	var (
		b        *routing.Builder
		ups      []routing.Number
		removed  []string
		fwds     []routing.Forward
		integrs  []routing.Integration
		wss      []routing.Workspace
		creds    []routing.SIPCredential
		fwdDirty = y.dirtyFwd
		intDirty = y.dirtyIntegr
		wsDirty  = y.dirtyWS
		crDirty  = y.dirtyCreds
	)
	if full {
		b = routing.NewBuilder()
		for _, a := range y.agents {
			b.AddAgent(a)
		}
		for _, n := range y.numbers {
			b.AddNumber(n)
		}
	} else {
		for key, before := range y.dirtyNums {
			n, ok := y.numbers[key]
			if before != "" && (!ok || n.E164 != before) {
				removed = append(removed, before)
			}
			if ok {
				ups = append(ups, n)
			}
		}
	}
	if full || fwdDirty {
		for key, f := range y.forwards {
			if y.liveForward(key, f) {
				fwds = append(fwds, f)
			}
		}
	}
	if full || intDirty {
		for _, i := range y.integrations {
			integrs = append(integrs, i)
		}
	}
	if full || wsDirty {
		for _, w := range y.workspaces {
			wss = append(wss, w)
		}
	}
	if full || crDirty {
		for _, c := range y.credentials {
			creds = append(creds, c)
		}
	}
	clear(y.dirtyNums)
	y.dirtyAgents, y.dirtyFwd, y.dirtyIntegr = false, false, false
	y.dirtyWS, y.dirtyCreds = false, false
	y.mu.Unlock()

	var snap *routing.Snapshot
	if full {
		for _, f := range fwds {
			b.AddForward(f)
		}
		for _, i := range integrs {
			b.AddIntegration(i)
		}
		for _, w := range wss {
			b.AddWorkspace(w)
		}
		for _, c := range creds {
			b.AddCredential(c)
		}
		snap = b.Build()
		y.FullBuilds.Add(1)
	} else {
		snap = y.last.WithNumbers(ups, removed)
		if fwdDirty {
			snap = snap.WithForwards(fwds)
		}
		if intDirty {
			snap = snap.WithIntegrations(integrs)
		}
		if wsDirty {
			snap = snap.WithWorkspaces(wss)
		}
		if crDirty {
			snap = snap.WithCredentials(creds)
		}
	}
	y.last = snap
	y.Table.Store(snap)
	if y.OnSnapshot != nil {
		y.OnSnapshot(snap)
	}
	y.readyOnce.Do(func() { close(y.ready) })
}

// follow forwards w's updates until ctx ends. A KV watcher is a nats.go
// ordered consumer: when the NATS server holding its consumer goes away it
// only notices after two missed 5 s heartbeats, and retries as slowly. So
// every StallCheck the highest revision delivered is compared with the
// bucket's last sequence; behind twice in a row, the watcher is replaced
// by one resuming after the last revision delivered.
func (y *Syncer) follow(ctx context.Context, kv jetstream.KeyValue, w jetstream.KeyWatcher, updates chan<- kvUpdate) {
	var last uint64
	for {
		tick := time.NewTicker(y.StallCheck)
		behind := 0
	watch:
		for {
			select {
			case <-ctx.Done():
				tick.Stop()
				w.Stop()
				return
			case e, ok := <-w.Updates():
				if !ok {
					break watch
				}
				if e != nil {
					last = e.Revision()
				}
				select {
				case updates <- kvUpdate{bucket: kv.Bucket(), entry: e}:
				case <-ctx.Done():
					tick.Stop()
					w.Stop()
					return
				}
			case <-tick.C:
				sctx, cancel := context.WithTimeout(ctx, y.StallCheck)
				st, err := kv.Status(sctx)
				cancel()
				if err != nil {
					continue // NATS away: nothing to compare with
				}
				bs, ok := st.(*jetstream.KeyValueBucketStatus)
				if !ok || bs.StreamInfo().State.LastSeq <= last {
					behind = 0
					continue
				}
				if behind++; behind >= 2 {
					break watch
				}
			}
		}
		tick.Stop()
		w.Stop()
		y.Restarts.Add(1)
		for {
			var err error
			if last > 0 {
				w, err = kv.WatchAll(ctx, jetstream.ResumeFromRevision(last+1))
			} else {
				w, err = kv.WatchAll(ctx)
			}
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(y.StallCheck / 4):
			}
		}
	}
}
