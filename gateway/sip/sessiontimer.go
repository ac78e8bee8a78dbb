package sip

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// RFC 4028 session timers, as a proxy (section 8). Session-Expires and
// Min-SE pass through untouched; an INVITE or UPDATE (new or in a dialog)
// whose Session-Expires is below sip.session_timers.min_se gets 422 with
// our Min-SE. When the 2xx of a dialog's INVITE carries Session-Expires,
// the call tracks the session interval: every 2xx to a re-INVITE or
// UPDATE of the dialog (either side) restarts it, and when no refresh
// came by interval - min(32 s, interval/3) (section 10) callgate sends
// BYE both ways and the call ends with reason session_expired.
//
// With sip.session_timers.default_interval set, an INVITE without
// Session-Expires is forwarded with one (at least the INVITE's Min-SE);
// when the 2xx then has none (the callee does no timers) and the caller
// said Supported: timer, callgate puts Session-Expires (refresher=uac) and
// Require: timer in the 2xx (section 8.2) so that the caller refreshes.
// When neither side supports timers there is no session timer (nobody
// would refresh).

// SessionTimersConfig is sip.session_timers.
type SessionTimersConfig struct {
	// MinSE is the smallest session interval accepted (RFC 4028 Min-SE).
	MinSE time.Duration `yaml:"min_se" env:"CALLGATE_SIP_SESSION_TIMERS_MIN_SE" help:"smallest session interval accepted: an INVITE or UPDATE whose Session-Expires is below it gets 422 with this Min-SE; whole seconds, at least 90s (RFC 4028)"`
	// DefaultInterval is the Session-Expires added to INVITEs that have
	// none; 0: none added.
	DefaultInterval time.Duration `yaml:"default_interval" env:"CALLGATE_SIP_SESSION_TIMERS_DEFAULT_INTERVAL" help:"Session-Expires added to INVITEs that carry none, so that a dialog whose BYE was lost ends after it; whole seconds, at least min_se; 0 = off"`
}

// rfcMinSE is RFC 4028's smallest Min-SE.
const rfcMinSE = 90 * time.Second

// validateSessionTimers checks sip.session_timers.
func validateSessionTimers(c Config) []error {
	var errs []error
	st := c.SessionTimers
	minSE := st.MinSE
	if minSE == 0 {
		minSE = rfcMinSE
	}
	if minSE < rfcMinSE || minSE%time.Second != 0 || minSE > 24*time.Hour {
		errs = append(errs, fmt.Errorf("sip.session_timers.min_se: %v: whole seconds from 90s (RFC 4028) to 24h", st.MinSE))
		minSE = max(minSE, rfcMinSE)
	}
	if st.DefaultInterval < 0 || st.DefaultInterval%time.Second != 0 || st.DefaultInterval > 24*time.Hour ||
		(st.DefaultInterval > 0 && st.DefaultInterval < minSE) {
		errs = append(errs, fmt.Errorf("sip.session_timers.default_interval: %v: 0 (off) or whole seconds from min_se (%v) to 24h", st.DefaultInterval, minSE))
	}
	return errs
}

// sessionTimer is a call's negotiated session interval. Held under c.mu.
type sessionTimer struct {
	interval  uint32 // seconds
	refresher string // "uac", "uas" or "" (not said)
	// uacOnly: callgate put Session-Expires;refresher=uac and Require:
	// timer in the 2xx (the callee does no timers); its answers to
	// refreshes get them too.
	uacOnly   bool
	inviteSeq uint32 // CSeq of the dialog's INVITE (its 2xx retransmissions are not refreshes)
	callerSeq uint32 // highest CSeq of the caller's in-dialog requests answered (our BYE goes above it)
	gen       uint64 // bumped on every restart: a stale timer does nothing
	t         *time.Timer
}

// sessionUnit is one second of session interval (tests shorten it).
func (s *Server) sessionUnit() time.Duration {
	if s.cfg.sessionUnit > 0 {
		return s.cfg.sessionUnit
	}
	return time.Second
}

func (s *Server) minSE() uint32 {
	if s.cfg.SessionTimers.MinSE <= 0 {
		return uint32(rfcMinSE / time.Second)
	}
	return uint32(s.cfg.SessionTimers.MinSE / time.Second)
}

// expiryAfter is when a session of interval seconds ends without a
// refresh: interval - min(32, interval/3) seconds (RFC 4028 section 10).
func expiryAfter(interval uint32) uint32 {
	cut := interval / 3
	if cut > 32 {
		cut = 32
	}
	return interval - cut
}

var errSessionExpires = errors.New("malformed Session-Expires")

// parseSessionExpires parses a Session-Expires value (RFC 4028 4):
// delta-seconds *(";" se-params), refresher=uac|uas. Delta-seconds over
// 2^32-1 count as 2^32-1.
func parseSessionExpires(v string) (secs uint32, refresher string, err error) {
	head, params, more := strings.Cut(v, ";")
	secs, err = parseDelta(head)
	if err != nil {
		return 0, "", errSessionExpires
	}
	for more {
		var p string
		p, params, more = strings.Cut(params, ";")
		name, val, hasVal := strings.Cut(p, "=")
		name = strings.TrimSpace(name)
		if !tokenOnly(name) {
			return 0, "", errSessionExpires
		}
		if strings.EqualFold(name, "refresher") {
			val = strings.ToLower(strings.TrimSpace(val))
			if !hasVal || (val != "uac" && val != "uas") || refresher != "" {
				return 0, "", errSessionExpires
			}
			refresher = val
		}
	}
	return secs, refresher, nil
}

// parseDelta parses delta-seconds (1*DIGIT, surrounding blanks allowed).
func parseDelta(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errSessionExpires
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errSessionExpires
		}
		if n < 1<<32 {
			n = n*10 + uint64(c-'0')
		}
	}
	if n > 1<<32-1 {
		n = 1<<32 - 1
	}
	return uint32(n), nil
}

// tokenOnly reports whether s is an RFC 3261 token.
func tokenOnly(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}

// headerGetter is a request or a response.
type headerGetter interface {
	GetHeader(name string) sip.Header
	GetHeaders(name string) []sip.Header
	Headers() []sip.Header
}

// sessionExpiresOf is the message's Session-Expires value (long or
// compact form "x").
func sessionExpiresOf(m headerGetter) (string, bool) {
	hs := m.Headers()
	h := headerNamed(hs, "session-expires")
	if h == nil {
		h = headerNamed(hs, "x")
	}
	if h == nil {
		return "", false
	}
	return h.Value(), true
}

// minSEOf is the request's Min-SE in seconds (0: none or unreadable).
func minSEOf(m headerGetter) uint32 {
	h := m.GetHeader("Min-SE")
	if h == nil {
		return 0
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	n, err := parseDelta(v)
	if err != nil {
		return 0
	}
	return n
}

// supportsTimer reports whether the message says Supported: timer
// (or its compact form k).
func supportsTimer(m headerGetter) bool {
	for _, name := range []string{"Supported", "k"} {
		for _, h := range m.GetHeaders(name) {
			for _, o := range strings.Split(h.Value(), ",") {
				if strings.EqualFold(strings.TrimSpace(o), "timer") {
					return true
				}
			}
		}
	}
	return false
}

// refuseSmallSession answers 422 (with our Min-SE) an INVITE or UPDATE
// whose Session-Expires is below sip.session_timers.min_se, and 400 one
// whose Session-Expires does not parse. It reports whether it answered.
func (s *Server) refuseSmallSession(req *sip.Request, from peer) bool {
	if req.Method != sip.INVITE && req.Method != sip.UPDATE {
		return false
	}
	v, ok := sessionExpiresOf(req)
	if !ok {
		return false
	}
	se, _, err := parseSessionExpires(v)
	if err != nil {
		s.metrics.Rejected.WithLabelValues("malformed").Inc()
		s.replyStateless(req, from, 400, "Bad Request", sip.NewHeader("Warning", `399 callgate "malformed Session-Expires"`))
		return true
	}
	min := s.minSE()
	if se >= min {
		return false
	}
	s.metrics.Rejected.WithLabelValues("session_interval_too_small").Inc()
	s.replyStateless(req, from, 422, "Session Interval Too Small", sip.NewHeader("Min-SE", strconv.FormatUint(uint64(min), 10)))
	return true
}

// forwardedSE is the Session-Expires (seconds) of the INVITE as
// forwarded: its own, else the default interval we add (0: none).
func (s *Server) forwardedSE(inv *sip.Request) uint32 {
	if v, ok := sessionExpiresOf(inv); ok {
		se, _, err := parseSessionExpires(v)
		if err != nil {
			return 0
		}
		return se
	}
	return s.defaultSE(inv)
}

// defaultSE is the Session-Expires we add to an INVITE without one: the
// default interval, at least the INVITE's Min-SE (0: none added).
func (s *Server) defaultSE(inv *sip.Request) uint32 {
	d := uint32(s.cfg.SessionTimers.DefaultInterval / time.Second)
	if d == 0 {
		return 0
	}
	if m := minSEOf(inv); m > d {
		d = m
	}
	return d
}

// writeDefaultSessionExpires adds Session-Expires to a forwarded INVITE
// that has none, when sip.session_timers.default_interval is set.
func (c *call) writeDefaultSessionExpires(buf *bytes.Buffer) {
	if c.s.cfg.SessionTimers.DefaultInterval <= 0 {
		return
	}
	if _, ok := sessionExpiresOf(c.inv); ok {
		return
	}
	if se := c.s.defaultSE(c.inv); se > 0 {
		writeHeader(buf, "Session-Expires", strconv.FormatUint(uint64(se), 10))
	}
}

// sessionAnswer looks at a 2xx to the dialog's INVITE (every one:
// retransmissions get the same headers) before it is forwarded to the
// caller. c.mu held.
func (c *call) sessionAnswer(res *sip.Response) {
	if c.ended || c.inv == nil {
		return
	}
	if c.st != nil {
		if c.st.uacOnly {
			if _, ok := sessionExpiresOf(res); !ok {
				addUACRefresher(res, c.st.interval)
			}
		}
		return
	}
	if v, ok := sessionExpiresOf(res); ok {
		se, ref, err := parseSessionExpires(v)
		if err != nil || se == 0 {
			return // not a session timer we can keep
		}
		c.startSession(se, ref, false)
		c.s.xm.session("negotiated")
		return
	}
	// The callee does no timers: only when callgate asks for session
	// timers and the caller refreshes (RFC 4028 8.2).
	if c.s.cfg.SessionTimers.DefaultInterval <= 0 || !supportsTimer(c.inv) {
		return
	}
	se := c.s.forwardedSE(c.inv)
	if se == 0 {
		return
	}
	addUACRefresher(res, se)
	c.startSession(se, "uac", true)
	c.s.xm.session("negotiated")
}

// sessionAnswerKeeps reports whether sessionAnswer leaves a 2xx that has
// no Session-Expires as it is and starts no timer (the fast path,
// fastpath.go, forwards only such 2xx from their bytes). Keep it in step
// with sessionAnswer. c.mu held.
func (c *call) sessionAnswerKeeps() bool {
	if c.ended || c.inv == nil {
		return true
	}
	if c.st != nil {
		return !c.st.uacOnly
	}
	return c.s.cfg.SessionTimers.DefaultInterval <= 0 || !supportsTimer(c.inv) || c.s.forwardedSE(c.inv) == 0
}

// addUACRefresher puts Session-Expires (refresher=uac) and Require: timer
// in a 2xx whose sender does no timers.
func addUACRefresher(res *sip.Response, se uint32) {
	res.AppendHeader(sip.NewHeader("Session-Expires", strconv.FormatUint(uint64(se), 10)+";refresher=uac"))
	res.AppendHeader(sip.NewHeader("Require", "timer"))
}

// startSession (re)starts the call's session timer. c.mu held.
func (c *call) startSession(se uint32, refresher string, uacOnly bool) {
	if c.st == nil {
		c.st = &sessionTimer{}
		if c.inv != nil {
			c.st.inviteSeq = c.inv.CSeq().SeqNo
		}
	}
	st := c.st
	st.interval, st.refresher = se, refresher
	st.uacOnly = st.uacOnly || uacOnly
	st.gen++
	gen := st.gen
	c.inspect.Store(true) // every refresh must be seen (contract: call.inspect)
	d := time.Duration(expiryAfter(se)) * c.s.sessionUnit()
	stop(st.t)
	st.t = time.AfterFunc(d, func() { c.onSessionExpired(gen) })
}

// stopSessionTimer ends the call's session timer. c.mu held.
func (c *call) stopSessionTimer() {
	if c.st != nil {
		stop(c.st.t)
		c.st.gen++
	}
}

// sessionResponse looks at a response inside a recorded dialog (forwarded
// statelessly): a 2xx to a re-INVITE or UPDATE is a session refresh
// (RFC 4028 10): with Session-Expires it restarts the timer with its
// interval; without one the session has no timer any more (unless
// callgate is the one asking the caller to refresh). It also keeps the
// caller's highest CSeq for our BYE. c.mu not held.
func (c *call) sessionResponse(res *sip.Response, cseq *sip.CSeqHeader) {
	code := res.StatusCode
	refresh := code >= 200 && code < 300 && (cseq.MethodName == sip.INVITE || cseq.MethodName == sip.UPDATE)
	if !refresh && !c.inspect.Load() {
		return
	}
	fromTag, _ := res.From().Params.Get("tag")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.state != stAccepted {
		return
	}
	fromCaller := fromTag == c.fromTag
	if c.st != nil && fromCaller && cseq.SeqNo > c.st.callerSeq && cseq.MethodName != sip.ACK {
		c.st.callerSeq = cseq.SeqNo
	}
	if !refresh {
		return
	}
	if c.st != nil && fromCaller && cseq.MethodName == sip.INVITE && cseq.SeqNo == c.st.inviteSeq {
		c.sessionAnswer(res) // a late retransmission of the dialog's 2xx
		return
	}
	if v, ok := sessionExpiresOf(res); ok {
		se, ref, err := parseSessionExpires(v)
		if err != nil || se == 0 {
			return
		}
		if c.st == nil {
			c.s.xm.session("negotiated")
		} else {
			c.s.xm.session("refreshed")
		}
		c.startSession(se, ref, false)
		return
	}
	if c.st == nil {
		return
	}
	if c.st.uacOnly {
		addUACRefresher(res, c.st.interval)
		c.s.xm.session("refreshed")
		c.startSession(c.st.interval, "uac", true)
		return
	}
	c.stopSessionTimer() // RFC 4028 7.2: no Session-Expires in the 2xx, no session expiration
	c.st = nil
}

// onSessionExpired ends a dialog whose session was not refreshed in time:
// BYE to both sides, reason session_expired.
func (c *call) onSessionExpired(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.st == nil || c.st.gen != gen || c.state != stAccepted {
		return
	}
	c.s.xm.session("expired")
	c.logger().Info("sip: session expired without a refresh: BYE both ways", "interval_s", c.st.interval,
		"refresher", c.st.refresher)
	c.sendByes()
	c.finish(200, "session_expired")
}

// byeSeq is the CSeq of our BYE toward the callee: above the dialog's
// INVITE and every request of the caller's we saw answered. c.mu held.
func (c *call) byeSeq() uint32 {
	seq := c.inv.CSeq().SeqNo + c.cseqDelta + 1
	if c.st != nil && c.st.callerSeq+c.cseqDelta+1 > seq {
		seq = c.st.callerSeq + c.cseqDelta + 1
	}
	return seq
}

// proxyRequireUnsupported is the Proxy-Require option tags callgate does
// not support: all but "timer" (RFC 4028: callgate is a session-timer
// aware proxy).
func proxyRequireUnsupported(tags []string) []string {
	out := tags[:0]
	for _, t := range tags {
		if !strings.EqualFold(t, "timer") {
			out = append(out, t)
		}
	}
	return out
}
