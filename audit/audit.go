// Package audit keeps callgate's audit trail: who (workspace, key id —
// never the key), did what, to which target, when, with what result, from
// which request and address. Records go to the bounded CALLGATE_AUDIT
// JetStream stream (store.AuditConfig: max age, max bytes) and to the log
// through slog; the admin reads them with GET /v1/audit, newest first.
//
// Failed key use is recorded through a limiter: a few records per source
// and window, the rest counted and written as one summary record per
// window, so a flood of bad keys cannot fill the stream.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/store"
)

// Actions (resource.verb): the values of Record.Action and of the action filter.
const (
	ActionWorkspaceCreate   = "workspace.create"
	ActionCreditsTopUp      = "credits.top_up"
	ActionNumberPurchase    = "number.purchase"
	ActionNumberRelease     = "number.release"
	ActionNumberImport      = "number.import"
	ActionIntegrationCreate = "integration.create"
	ActionIntegrationDelete = "integration.delete"
	// Settings, SIP credentials and integration changes (#12, #13).
	ActionWorkspaceUpdate     = "workspace.update"
	ActionWebhookSecretRotate = "webhook_secret.rotate"
	ActionSIPCredentialCreate = "sip_credential.create"
	ActionSIPCredentialRevoke = "sip_credential.revoke"
	ActionIntegrationUpdate   = "integration.update"
	// ActionAuthFailed is a request with a missing or unknown API key (401).
	ActionAuthFailed = "auth.failed"
	// ActionAuthForbidden is a valid key used where it is not allowed (403):
	// a workspace key on an admin endpoint or the admin key on a workspace one.
	ActionAuthForbidden = "auth.forbidden"
)

// Actions lists every action.
var Actions = []string{
	ActionWorkspaceCreate, ActionCreditsTopUp, ActionNumberPurchase, ActionNumberRelease, ActionNumberImport,
	ActionIntegrationCreate, ActionIntegrationDelete, ActionAuthFailed, ActionAuthForbidden,
	ActionWorkspaceUpdate, ActionWebhookSecretRotate, ActionSIPCredentialCreate, ActionSIPCredentialRevoke, ActionIntegrationUpdate,
}

// KnownAction reports whether a is one of Actions.
func KnownAction(a string) bool {
	for _, x := range Actions {
		if x == a {
			return true
		}
	}
	return false
}

// Results.
const (
	ResultOK         = "ok"
	ResultPartial    = "partial"    // some of a batch failed (imports)
	ResultFailed     = "failed"     // the operation was refused or failed (4xx, 5xx)
	ResultDenied     = "denied"     // authentication or authorization failed
	ResultSuppressed = "suppressed" // summary of failed key uses not recorded one by one
)

// Actors.
const (
	ActorAdmin     = "admin"
	ActorWorkspace = "workspace"
	ActorAnonymous = "anonymous" // no key, or a key that is not valid
)

// Record is one audit record.
type Record struct {
	// Seq is the record's position in the audit stream (a paging cursor).
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Action string    `json:"action"`
	Result string    `json:"result"`
	// Status is the HTTP status the request was answered with.
	Status int `json:"status,omitempty"`
	// Workspace is the workspace acted on (for the admin's workspace
	// operations, the target workspace).
	Workspace string `json:"workspace,omitempty"`
	Actor     string `json:"actor"`
	// KeyID identifies the API key used (a prefix of its SHA-256), never the key.
	KeyID      string `json:"key_id,omitempty"`
	Target     string `json:"target,omitempty"`
	RequestID  string `json:"request_id,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	Method     string `json:"method,omitempty"`
	Path       string `json:"path,omitempty"`
	// Count is how many events a summary record stands for (suppressed).
	Count  int64  `json:"count,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Metrics are the audit log's collectors:
//
//	callgate_audit_records_total{outcome}: written, write_error, suppressed
type Metrics struct {
	Records *prometheus.CounterVec
}

// Outcomes of a record (bounded label values).
const (
	OutcomeWritten    = "written"
	OutcomeWriteError = "write_error"
	OutcomeSuppressed = "suppressed"
)

// NewMetrics builds the collectors, registered on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Records: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "callgate", Subsystem: "audit", Name: "records_total",
		Help: "Audit records by outcome: written to the audit stream, write_error (logged only), suppressed (failed key uses counted in a summary record).",
	}, []string{"outcome"})}
	for _, o := range []string{OutcomeWritten, OutcomeWriteError, OutcomeSuppressed} {
		m.Records.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.Records)
	}
	return m
}

// Options configure a Log.
type Options struct {
	Log     *slog.Logger
	Metrics *Metrics
	Now     func() time.Time
	Limits  Limits
}

// Log writes and reads audit records.
type Log struct {
	st  *store.Store
	log *slog.Logger
	m   *Metrics
	now func() time.Time
	lim *limiter
}

// New returns a Log on st's audit stream.
func New(st *store.Store, o Options) *Log {
	l := &Log{st: st, log: o.Log, m: o.Metrics, now: o.Now}
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.m == nil {
		l.m = NewMetrics(nil)
	}
	if l.now == nil {
		l.now = time.Now
	}
	l.lim = newLimiter(o.Limits, l.now())
	return l
}

// subject is the record's subject: prefix.<workspace|_>.<resource>.<verb>.
func subject(r Record) string {
	ws := r.Workspace
	if ws == "" {
		ws = "_"
	}
	return store.AuditSubjectPrefix + ws + "." + r.Action
}

// Write records r: logs it and appends it to the audit stream. A record
// that cannot be stored is still logged (at error level) and counted.
func (l *Log) Write(ctx context.Context, r Record) {
	if r.Time.IsZero() {
		r.Time = l.now().UTC()
	}
	if !KnownAction(r.Action) || !safeToken(r.Workspace) {
		// Never expected: callers use the constants and valid ids.
		l.log.Error("audit: record refused", "action", r.Action, "workspace", r.Workspace)
		l.m.Records.WithLabelValues(OutcomeWriteError).Inc()
		return
	}
	r.Target = clip(r.Target, 200)
	r.Detail = clip(r.Detail, 500)
	b, _ := json.Marshal(r)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), store.OpTimeout)
	defer cancel()
	_, err := l.st.JS.Publish(ctx, subject(r), b)
	attrs := []any{"action", r.Action, "result", r.Result, "status", r.Status, "workspace", r.Workspace,
		"actor", r.Actor, "key_id", r.KeyID, "target", logTarget(r.Target), "request_id", r.RequestID, "remote_addr", r.RemoteAddr}
	if r.Count > 0 {
		attrs = append(attrs, "count", r.Count)
	}
	if err != nil {
		l.m.Records.WithLabelValues(OutcomeWriteError).Inc()
		l.log.Error("audit: record not stored", append(attrs, "err", err)...)
		return
	}
	l.m.Records.WithLabelValues(OutcomeWritten).Inc()
	l.log.Info("audit", attrs...)
}

// AuthFailed records a failed key use from source (an IP address),
// within the limits: beyond them it is only counted, and Flush writes
// the count as one summary record.
func (l *Log) AuthFailed(ctx context.Context, r Record) {
	if !l.lim.allow(sourceKey(r.RemoteAddr)) {
		l.m.Records.WithLabelValues(OutcomeSuppressed).Inc()
		return
	}
	l.Write(ctx, r)
}

// Flush ends the limiter's window: the failed key uses it suppressed
// are written as one summary record (none when nothing was suppressed).
func (l *Log) Flush(ctx context.Context) {
	s := l.lim.roll(l.now())
	if s.total == 0 {
		return
	}
	parts := make([]string, 0, len(s.top))
	for _, t := range s.top {
		parts = append(parts, fmt.Sprintf("%s: %d", t.source, t.n))
	}
	r := Record{
		Action: ActionAuthFailed, Result: ResultSuppressed, Status: 401, Actor: ActorAnonymous, Count: s.total,
		Detail: fmt.Sprintf("%d failed key uses in %s not recorded one by one; by source: %s",
			s.total, s.window.Round(time.Second), strings.Join(parts, ", ")),
	}
	if len(s.top) == 1 && s.others == 0 {
		r.RemoteAddr = s.top[0].source
	}
	l.Write(ctx, r)
}

// Run flushes the limiter every window until ctx ends (then once more).
func (l *Log) Run(ctx context.Context) {
	t := time.NewTicker(l.lim.lim.Window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), store.OpTimeout)
			l.Flush(fctx)
			cancel()
			return
		case <-t.C:
			l.Flush(ctx)
		}
	}
}

// Query selects records: all filters optional.
type Query struct {
	Workspace string // workspace id
	Action    string // one of Actions
	Before    uint64 // only records with Seq < Before (paging cursor)
	Limit     int    // 1..MaxLimit (0: DefaultLimit)
}

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// Page is a page of records, newest first; NextBefore (0: no more) is
// the Before of the next page.
type Page struct {
	Records    []Record
	NextBefore uint64
}

// List returns the records matching q, newest first. It reads the
// stream backward in growing windows through a filtered consumer, so a
// rare workspace's records are found without reading every record.
func (l *Log) List(ctx context.Context, q Query) (Page, error) {
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	if q.Limit > MaxLimit {
		q.Limit = MaxLimit
	}
	if !safeToken(q.Workspace) || (q.Action != "" && !KnownAction(q.Action)) {
		return Page{}, errors.New("audit: invalid filter")
	}
	filter := store.AuditSubjectPrefix
	if q.Workspace != "" {
		filter += q.Workspace + "."
	} else {
		filter += "*."
	}
	if q.Action != "" {
		filter += q.Action
	} else {
		filter += "*.*"
	}
	info, err := l.st.Audit.Info(ctx)
	if err != nil {
		return Page{}, fmt.Errorf("audit: stream info: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	hi := last
	if q.Before > 0 && q.Before-1 < hi {
		hi = q.Before - 1
	}
	var out []Record // newest first
	window := uint64(256)
	for hi >= first && hi > 0 && len(out) <= q.Limit {
		lo := first
		if hi-first+1 > window {
			lo = hi - window + 1
		}
		recs, err := l.scan(ctx, filter, lo, hi)
		if err != nil {
			return Page{}, err
		}
		for i := len(recs) - 1; i >= 0; i-- {
			out = append(out, recs[i])
		}
		if lo == first {
			break
		}
		hi = lo - 1
		if window < 1<<16 {
			window *= 4
		}
	}
	p := Page{Records: out}
	if len(out) > q.Limit {
		p.Records = out[:q.Limit]
		p.NextBefore = p.Records[q.Limit-1].Seq
	}
	if p.Records == nil {
		p.Records = []Record{}
	}
	return p, nil
}

// scan returns the records matching filter with lo <= seq <= hi, oldest first.
func (l *Log) scan(ctx context.Context, filter string, lo, hi uint64) ([]Record, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*store.OpTimeout)
	defer cancel()
	c, err := l.st.Audit.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     filter,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       lo,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("audit: read: %w", err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), store.OpTimeout)
		_ = l.st.Audit.DeleteConsumer(dctx, c.CachedInfo().Name)
		dcancel()
	}()
	var out []Record
	pending := c.CachedInfo().NumPending
	for pending > 0 {
		n := pending
		if n > 256 {
			n = 256
		}
		b, err := c.Fetch(int(n), jetstream.FetchMaxWait(store.OpTimeout))
		if err != nil {
			return nil, fmt.Errorf("audit: read: %w", err)
		}
		got := 0
		for m := range b.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("audit: read: %w", err)
			}
			pending = md.NumPending
			seq := md.Sequence.Stream
			if seq > hi {
				return out, nil
			}
			var r Record
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				l.log.Warn("audit: unreadable record skipped", "seq", seq, "err", err)
				continue
			}
			r.Seq = seq
			out = append(out, r)
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("audit: read: %w", err)
		}
		if got == 0 {
			return nil, fmt.Errorf("audit: read: %d records announced but none arrived", pending)
		}
	}
	return out, nil
}

// safeToken reports whether s can be one subject token (workspace ids are).
func safeToken(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return len(s) <= 63
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// logTarget masks phone numbers in log lines (the stream keeps them).
func logTarget(t string) string {
	if strings.HasPrefix(t, "+") {
		return phone.Mask(t)
	}
	return t
}

// Metrics returns the log's collectors.
func (l *Log) Metrics() *Metrics { return l.m }
