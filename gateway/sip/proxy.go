package sip

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

// Call states (server side, towards the caller).
const (
	stCalling    = iota // INVITE forwarded, no provisional forwarded yet
	stProceeding        // a provisional was forwarded
	stAccepted          // a 2xx was forwarded: dialog confirmed
	stCompleted         // a final non-2xx was sent upstream
)

const (
	t1 = 500 * time.Millisecond
	t2 = 4 * time.Second
	// linger keeps a finished call's transactions to absorb stray
	// retransmissions (INVITE, ACK, 2xx, downstream 487).
	linger = 5 * time.Second
	// timerH bounds waiting for the ACK of a non-2xx final response.
	timerH = 32 * time.Second
)

// branch is one forwarded INVITE (client transaction).
type branch struct {
	id      string
	ep      routing.Endpoint
	to      peer
	target  sip.Uri      // Request-URI of the forwarded INVITE
	inv     *sip.Request // the caller's INVITE (CANCEL, ACK); nil once not needed
	raw     []byte       // serialised forwarded INVITE (retransmissions)
	gotResp bool
	gotProv bool
	final   bool
	cancel  bool // CANCEL sent
	timerA  *time.Timer
	aInt    time.Duration
	timerF  *time.Timer
}

// call is one INVITE from a carrier and the dialog it creates.
type call struct {
	s  *Server
	mu sync.Mutex

	id       string // Call-ID
	inv      *sip.Request
	up       peer // where the INVITE came from; responses go there
	upBranch string
	fromTag  string
	info     callInfo
	trunk    *Trunk
	start    time.Time

	cands    []routing.Endpoint
	ci       int
	cur      *branch
	branches []*branch
	fwdBody  []byte

	resolving bool // cands[ci]'s host name is being looked up (lookupThenBranch)

	state      int
	cancelled  bool
	provSeen   bool
	answeredAt time.Time
	ended      bool
	acked      bool        // the caller's ACK for the 2xx went through
	ackTimer   *time.Timer // 2xx never ACKed → the dialog record ends (64*T1)

	lastUp  []byte // last final non-2xx sent upstream (retransmissions)
	timerG  *time.Timer
	gInt    time.Duration
	ring    *time.Timer
	release *time.Timer

	media       MediaSession
	answerIn    []byte // last 2xx SDP from the agent and its rewrite
	answerOut   []byte
	agentTag    string
	agentTarget *sip.Uri // agent's Contact (for BYE on media timeout)
}

// serverTxKey matches an INVITE with its retransmissions, CANCEL and
// non-2xx ACK: the top Via branch and sent-by (RFC 3261 17.2.3), or for
// pre-RFC 3261 peers without the magic cookie, Call-ID, CSeq number,
// From tag and sent-by.
func serverTxKey(req *sip.Request) string {
	v := req.Via()
	br, _ := v.Params.Get("branch")
	if strings.HasPrefix(br, "z9hG4bK") {
		return br + "|" + v.SentBy()
	}
	tag, _ := req.From().Params.Get("tag")
	return "2543|" + string(*req.CallID()) + "|" + strconv.FormatUint(uint64(req.CSeq().SeqNo), 10) + "|" + tag + "|" + v.SentBy()
}

func (s *Server) handleInvite(req *sip.Request, from peer) {
	txKey := serverTxKey(req)
	if c, ok := s.serverTx.get(txKey); ok {
		// retransmission: resend the last final response, if any
		c.mu.Lock()
		if c.lastUp != nil {
			_ = s.tp.send(c.up, c.lastUp)
		}
		c.mu.Unlock()
		return
	}
	if s.draining.Load() {
		s.metrics.Rejected.WithLabelValues("draining").Inc()
		s.replyStateless(req, from, 503, "Service Unavailable", s.retryAfter())
		s.logRejected(req, "", 503, "draining")
		return
	}
	if mf := req.MaxForwards(); mf != nil && *mf == 0 {
		s.metrics.Rejected.WithLabelValues("too_many_hops").Inc()
		s.replyStateless(req, from, 483, "Too Many Hops")
		s.logRejected(req, "", 483, "too_many_hops")
		return
	}
	trunk := s.trunkFor(from.addr.Addr())
	if trunk == nil {
		trunk = s.anyAuth
	}
	if trunk == nil {
		// an agent endpoint may send in-dialog requests, not new calls
		s.metrics.Rejected.WithLabelValues("unknown_source").Inc()
		s.replyStateless(req, from, 403, "Forbidden")
		// debug only: scanners must not flood the log
		s.log.Debug("sip: call rejected", "call_id", string(*req.CallID()), "number", phone.Mask(req.Recipient.User),
			"status", 403, "reason", "unknown_source")
		return
	}
	if trunk.Username != "" && !s.checkDigest(req, from, trunk) {
		return
	}
	snap := s.table.Load()
	if snap == nil {
		s.metrics.Rejected.WithLabelValues("no_snapshot").Inc()
		s.replyStateless(req, from, 503, "Service Unavailable", s.retryAfter())
		s.logRejected(req, "", 503, "no_snapshot")
		return
	}
	info, ok := resolve(req, snap, trunk.Country)
	if !ok {
		s.metrics.Rejected.WithLabelValues("unknown_number").Inc()
		s.replyStateless(req, from, 404, "Number Not Provisioned")
		s.logRejected(req, info.called, 404, "unknown_number")
		return
	}
	c := &call{
		s: s, id: string(*req.CallID()), inv: req, up: replyPeer(req, from), upBranch: txKey,
		info: info, trunk: trunk, start: time.Now(),
	}
	c.fromTag, _ = req.From().Params.Get("tag")
	r := info.route
	if r.Agent == nil || r.Number.Status != routing.StatusActive {
		s.metrics.Rejected.WithLabelValues("unassigned").Inc()
		s.replyStateless(req, from, 480, "Temporarily Unavailable")
		c.publish(calls.Started, 0, "")
		c.publish(calls.Ended, 480, "unassigned")
		c.logOutcome(480, "unassigned")
		s.metrics.Calls.WithLabelValues("4xx").Inc()
		return
	}
	c.cands = routing.AppendCandidates(make([]routing.Endpoint, 0, len(r.Agent.Endpoints)), r, s.prober)
	if len(c.cands) == 0 {
		s.metrics.Rejected.WithLabelValues("no_endpoint").Inc()
		s.replyStateless(req, from, 503, "Service Unavailable", s.retryAfter())
		c.publish(calls.Started, 0, "")
		c.publish(calls.Ended, 503, "no_endpoint")
		c.logOutcome(503, "no_endpoint")
		s.metrics.Calls.WithLabelValues("5xx").Inc()
		return
	}
	c.fwdBody = req.Body()
	if s.media != nil && (r.Agent.Media == "relay" || (r.Agent.Media == "" && s.relayByDefault)) {
		sess, err := s.media.NewSession(c.id, c.onMediaTimeout)
		if err != nil {
			s.metrics.Rejected.WithLabelValues("no_media_ports").Inc()
			s.replyStateless(req, from, 503, "Service Unavailable", s.retryAfter())
			s.logRejected(req, r.Number.E164, 503, "no_media_ports")
			return
		}
		if len(c.fwdBody) > 0 {
			nb, err := sess.RewriteOffer(c.fwdBody)
			if err != nil {
				sess.Close()
				s.metrics.Rejected.WithLabelValues("bad_sdp").Inc()
				s.replyStateless(req, from, 400, "Bad Request", sip.NewHeader("Warning", `399 callgate "malformed SDP"`))
				s.logRejected(req, r.Number.E164, 400, "bad_sdp")
				return
			}
			c.fwdBody = nb
		}
		c.media = sess
	}
	// Locked before it is visible: a CANCEL handled by the other read
	// loop waits until the INVITE is forwarded (call.mu before shard locks).
	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.serverTx.putNew(txKey, c) {
		// the same INVITE, handled concurrently by the other read loop
		if c.media != nil {
			c.media.Close()
		}
		return
	}
	s.active.Add(1)
	s.metrics.ActiveCalls.Inc()
	// 100 Trying at once: the carrier stops retransmitting.
	s.replyStateless(req, from, 100, "Trying")
	c.publish(calls.Started, 0, "")
	c.ring = time.AfterFunc(s.cfg.RingTimeout, c.onRingTimeout)
	c.startBranch()
}

// logRejected is the info line for an INVITE refused before a call
// existed (480 and 503 no_endpoint log through logOutcome). number is the
// E.164 when known, else the Request-URI user; it is always masked.
func (s *Server) logRejected(req *sip.Request, number string, code int, reason string) {
	if number == "" {
		number = req.Recipient.User
	}
	s.log.Info("sip: call rejected", "call_id", string(*req.CallID()), "number", phone.Mask(number),
		"status", code, "reason", reason)
}

// startBranch forwards the INVITE to the next candidate endpoint. c.mu held.
func (c *call) startBranch() {
	s := c.s
	if c.resolving {
		return // lookupThenBranch goes on
	}
	for c.ci < len(c.cands) {
		ep := c.cands[c.ci]
		var u sip.Uri
		if err := sip.ParseUri(ep.URI, &u); err != nil {
			c.ci++
			continue
		}
		to, err := s.tp.uriPeerCached(&u)
		if err == errNeedLookup {
			if c.lookupThenBranch(u.Host, ep) {
				return // startBranch goes on once the name is resolved
			}
			err = &dnsError{host: u.Host, err: errBusy}
		}
		if err != nil {
			if isResolveErr(err) {
				c.resolveFailed(ep, to.proto, err)
			}
			c.ci++
			continue
		}
		b := &branch{id: newBranch(branchStateful), ep: ep, to: to, target: u, inv: c.inv}
		b.raw = c.buildForward(&u, b.id, to.proto, ep)
		c.cur = b
		c.branches = append(c.branches, b)
		s.clientTx.put(b.id, c)
		if err := s.tp.sendThen(to, b.raw, func(err error) {
			if err != nil {
				c.branchUnreachable(b)
			}
		}); err != nil && err != errPending {
			s.log.Debug("sip: endpoint unreachable", "endpoint", c.ci, "region", ep.Region, "err", err)
			b.final = true
			s.metrics.Failovers.WithLabelValues(s.metrics.regions.label(ep.Region)).Inc()
			c.ci++
			continue
		}
		if to.proto == protoUDP {
			b.aInt = t1
			b.timerA = time.AfterFunc(t1, func() { c.retransmit(b) })
		}
		b.timerF = time.AfterFunc(s.cfg.InviteTimeout, func() { c.branchTimeout(b) })
		return
	}
	c.replyUp(503, "Service Unavailable", s.retryAfter())
	c.finish(503, "no_endpoint")
}

// lookupThenBranch resolves host (the endpoint ep's, not in the cache) in
// another goroutine, off the read loop and without c.mu, then goes on
// with startBranch for the same candidate unless the call moved on
// meanwhile (cancelled, timed out). false when too many lookups are
// running. c.mu held.
func (c *call) lookupThenBranch(host string, ep routing.Endpoint) bool {
	s := c.s
	ci := c.ci
	c.resolving = true
	ok := s.tp.lookupThen(host, func(err error) { // nil: the cache startBranch reads has the name
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.resolving || c.ci != ci {
			return
		}
		c.resolving = false
		if c.ended || c.cancelled || c.state >= stAccepted {
			return
		}
		if err != nil {
			var u sip.Uri
			pr := protoUDP
			if sip.ParseUri(ep.URI, &u) == nil {
				pr, _ = uriProto(&u)
			}
			c.resolveFailed(ep, pr, err)
			c.ci++
		}
		c.startBranch()
	})
	if !ok {
		c.resolving = false
	}
	return ok
}

// resolveFailed: the endpoint's host name did not resolve → counted like
// a dial failure (the caller moves on to the next endpoint). c.mu held.
func (c *call) resolveFailed(ep routing.Endpoint, p proto, err error) {
	s := c.s
	stage := "resolve"
	if errors.Is(err, errBusy) {
		stage = "busy" // too many lookups and dials running
	}
	s.metrics.SendErrors.WithLabelValues(p.label(), stage).Inc()
	s.log.Debug("sip: endpoint unreachable", "call_id", c.id, "endpoint", c.ci, "region", ep.Region,
		"stage", stage, "err", err)
	s.metrics.Failovers.WithLabelValues(s.metrics.regions.label(ep.Region)).Inc()
	s.prober.passiveMiss(ep.URI)
}

// buildForward serialises the INVITE sent to an endpoint straight from
// the caller's parsed INVITE (no clone of the request): our Via and
// Record-Route on top, leading Route entries naming us removed,
// Max-Forwards decremented, incoming X-Callgate-* dropped and ours added.
func (c *call) buildForward(target *sip.Uri, branchID string, p proto, ep routing.Endpoint) []byte {
	s := c.s
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<16 {
			bufPool.Put(buf)
		}
	}()
	buf.WriteString("INVITE ")
	target.StringWrite(buf)
	buf.WriteString(" SIP/2.0\r\n")
	s.writeVia(buf, p, branchID)
	// Record-Route: one entry, or two when the legs use different
	// transports (RFC 5658): the callee-facing one on top. Each carries
	// the MACs that let any node of ours verify the dialog and its peers.
	var tb [3 * macChars]byte
	tok := s.rrToken(tb[:0], c.id, s.callerHop(c.inv, c.up), target.Host)
	buf.WriteString("Record-Route: ")
	s.writeRR(buf, p, tok)
	buf.WriteString("\r\n")
	if p != c.up.proto {
		buf.WriteString("Record-Route: ")
		s.writeRR(buf, c.up.proto, tok)
		buf.WriteString("\r\n")
	}
	leadingRoute, haveMF := true, false
	for _, h := range c.inv.Headers() {
		switch hv := h.(type) {
		case *sip.RouteHeader:
			if leadingRoute && s.isUs(&hv.Address) {
				continue
			}
			leadingRoute = false
		case *sip.MaxForwardsHeader:
			haveMF = true
			buf.WriteString("Max-Forwards: ")
			buf.WriteString(strconv.Itoa(int(*hv) - 1))
			buf.WriteString("\r\n")
			continue
		case *sip.ContentLengthHeader:
			continue // ours below
		default:
			if n := h.Name(); len(n) > 11 && strings.EqualFold(n[:11], "x-callgate-") {
				continue // callgate's own headers are never taken from the outside
			}
			if n := h.Name(); len(n) == 5 && strings.EqualFold(n, "route") {
				leadingRoute = false
			}
		}
		writeHeaderLine(buf, h)
	}
	if !haveMF {
		buf.WriteString("Max-Forwards: 69\r\n")
	}
	r := c.info.route
	writeHeader(buf, "X-Callgate-Number", r.Number.E164)
	writeHeader(buf, "X-Callgate-Agent", r.Agent.ID)
	writeHeader(buf, "X-Callgate-Region", ep.Region)
	if c.info.forwardedFrom != "" {
		writeHeader(buf, "X-Callgate-Forwarded-From", c.info.forwardedFrom)
	}
	if c.info.originalCalled != "" {
		writeHeader(buf, "X-Callgate-Original-Called", c.info.originalCalled)
	}
	buf.WriteString("Content-Length: ")
	buf.WriteString(strconv.Itoa(len(c.fwdBody)))
	buf.WriteString("\r\n\r\n")
	buf.Write(c.fwdBody)
	return append([]byte(nil), buf.Bytes()...)
}

func writeHeader(buf *bytes.Buffer, name, value string) {
	buf.WriteString(name)
	buf.WriteString(": ")
	buf.WriteString(value)
	buf.WriteString("\r\n")
}

// writeVia writes our Via line (what via returns, without allocating it).
func (s *Server) writeVia(buf *bytes.Buffer, p proto, branchID string) {
	buf.WriteString("Via: SIP/2.0/")
	buf.WriteString(p.String())
	buf.WriteByte(' ')
	buf.WriteString(s.viaHost)
	buf.WriteByte(':')
	buf.WriteString(strconv.Itoa(s.viaPort(p)))
	buf.WriteString(";branch=")
	buf.WriteString(branchID)
	buf.WriteString("\r\n")
}

func (s *Server) rr(p proto) string {
	switch p {
	case protoTCP:
		return s.rrTCP
	case protoTLS:
		if s.rrTLS != "" {
			return s.rrTLS
		}
		return s.rrTCP
	}
	return s.rrUDP
}

func (s *Server) via(p proto, branchID string) *sip.ViaHeader {
	return &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: p.String(),
		Host: trimBrackets(s.viaHost), Port: s.viaPort(p), Params: sip.HeaderParams{{K: "branch", V: branchID}}}
}

func (s *Server) viaPort(p proto) int {
	port := s.tp.udpAddr.Port()
	switch p {
	case protoTCP:
		port = s.tp.tcpAddr.Port()
	case protoTLS:
		if s.tp.tlsLn != nil {
			port = s.tp.tlsAddr.Port()
		} else {
			port = s.tp.tcpAddr.Port()
		}
	}
	return int(port)
}

func (c *call) retransmit(b *branch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != b || b.gotResp || b.final || c.ended {
		return
	}
	_ = c.s.tp.send(b.to, b.raw)
	b.aInt *= 2
	if b.aInt > t2 {
		b.aInt = t2
	}
	b.timerA.Reset(b.aInt)
}

// branchTimeout: no response at all from the endpoint → next endpoint.
func (c *call) branchTimeout(b *branch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != b || b.gotResp || b.final || c.ended || c.state >= stAccepted || c.cancelled {
		return
	}
	b.final = true
	stop(b.timerA)
	c.s.metrics.Failovers.WithLabelValues(c.s.metrics.regions.label(b.ep.Region)).Inc()
	c.s.prober.passiveMiss(b.ep.URI)
	c.ci++
	c.startBranch()
}

// branchUnreachable: the endpoint could not be connected to (TCP/TLS
// dial or handshake failed) → next endpoint at once.
func (c *call) branchUnreachable(b *branch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != b || b.gotResp || b.final || c.ended || c.state >= stAccepted || c.cancelled {
		return
	}
	b.final = true
	stop(b.timerA)
	stop(b.timerF)
	c.s.metrics.Failovers.WithLabelValues(c.s.metrics.regions.label(b.ep.Region)).Inc()
	c.s.prober.passiveMiss(b.ep.URI)
	c.ci++
	c.startBranch()
}

func (c *call) onRingTimeout() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.state >= stAccepted {
		return
	}
	c.cancelBranches()
	c.replyUp(408, "Request Timeout")
	c.finish(408, "ring_timeout")
}

// cancelBranches sends CANCEL on every branch that had a provisional
// response and no final one; the others are abandoned (RFC 3261 9.1).
func (c *call) cancelBranches() {
	for _, b := range c.branches {
		stop(b.timerA)
		stop(b.timerF)
		if b.gotProv && !b.final && !b.cancel {
			c.sendCancel(b)
		}
	}
}

// sendCancel: same Request-URI, top Via (branch), Call-ID, From, To and
// CSeq number as the forwarded INVITE, method CANCEL.
func (c *call) sendCancel(b *branch) {
	b.cancel = true
	if b.inv == nil {
		return
	}
	cr := c.hopRequest(b, sip.CANCEL, nil)
	_ = c.s.tp.sendMsg(b.to, cr)
}

// hopRequest builds a CANCEL or non-2xx ACK for branch b (hop by hop).
func (c *call) hopRequest(b *branch, m sip.RequestMethod, res *sip.Response) *sip.Request {
	inv := b.inv
	r := sip.NewRequest(m, b.target)
	r.AppendHeader(c.s.via(b.to.proto, b.id))
	leading := true
	for _, h := range inv.GetHeaders("Route") {
		if rh, ok := h.(*sip.RouteHeader); ok && leading && c.s.isUs(&rh.Address) {
			continue
		}
		leading = false
		r.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.AppendHeader(sip.HeaderClone(inv.From()))
	if res != nil && res.To() != nil {
		r.AppendHeader(sip.HeaderClone(res.To()))
	} else {
		r.AppendHeader(sip.HeaderClone(inv.To()))
	}
	r.AppendHeader(sip.HeaderClone(inv.CallID()))
	r.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: m})
	cl := sip.ContentLengthHeader(0)
	r.AppendHeader(&cl)
	return r
}

func stop(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// onInviteResponse handles a response to one of the call's forwarded
// INVITEs. c.mu is taken here.
func (c *call) onInviteResponse(res *sip.Response, br string) {
	s := c.s
	c.mu.Lock()
	defer c.mu.Unlock()
	var b *branch
	for _, x := range c.branches {
		if x.id == br {
			b = x
		}
	}
	if b == nil {
		return
	}
	code := res.StatusCode
	if code != 503 {
		s.prober.aliveURI(b.ep.URI) // passive health: any answer is a sign of life
	}
	b.gotResp = true
	stop(b.timerA)
	if code >= 200 {
		stop(b.timerF)
	}
	switch {
	case code == 100:
		stop(b.timerF) // alive: ring timeout takes over
	case code < 200:
		stop(b.timerF)
		b.gotProv = true
		if c.cancelled || c.ended || b != c.cur {
			if !b.cancel && !b.final {
				c.sendCancel(b)
			}
			return
		}
		if c.state > stProceeding {
			return
		}
		if !c.provSeen {
			c.provSeen = true
			s.metrics.SetupProvisional.WithLabelValues(c.labels()...).Observe(time.Since(c.start).Seconds())
		}
		c.state = stProceeding
		if c.media != nil && len(res.Body()) > 0 {
			nb, err := c.media.RewriteAnswer(res.Body())
			if err != nil {
				return // a broken early-media SDP is not forwarded
			}
			res.SetBody(nb)
		}
		c.forwardUp(res)
	case code < 300:
		b.final = true
		if c.media != nil && len(res.Body()) > 0 {
			if c.answerIn != nil && bytes.Equal(res.Body(), c.answerIn) {
				res.SetBody(c.answerOut)
			} else if nb, err := c.media.RewriteAnswer(res.Body()); err == nil {
				c.answerIn, c.answerOut = res.Body(), nb
				res.SetBody(nb)
			}
		}
		if c.state < stAccepted && !c.ended {
			c.state = stAccepted
			c.cur = b // a late answer from an abandoned branch wins too
			c.answeredAt = time.Now()
			stop(c.ring)
			s.metrics.SetupAnswer.WithLabelValues(c.labels()...).Observe(c.answeredAt.Sub(c.start).Seconds())
			if to := res.To(); to != nil {
				c.agentTag, _ = to.Params.Get("tag")
			}
			if ct := res.Contact(); ct != nil {
				u := ct.Address
				c.agentTarget = &u
			}
			s.dialogs.put(c.id, c)
			c.ackTimer = time.AfterFunc(s.noAckTimeout, c.onNoAck)
			c.publish(calls.Answered, code, "")
			// other branches (abandoned) are cancelled
			for _, x := range c.branches {
				if x != b && x.gotProv && !x.final && !x.cancel {
					c.sendCancel(x)
				}
			}
			c.scheduleRelease(linger) // serverTx no longer needed after a short while
		}
		c.forwardUp(res) // every 2xx, retransmissions included
	default:
		// final non-2xx: ACK it hop by hop, then fail over or forward
		if b.inv != nil {
			_ = s.tp.sendMsg(b.to, c.hopRequest(b, sip.ACK, res))
		}
		if b.final {
			return // retransmission
		}
		b.final = true
		if b != c.cur || c.ended || c.state >= stAccepted || c.cancelled {
			return
		}
		if (code >= 500 && code < 600) || code == 408 {
			s.metrics.Failovers.WithLabelValues(s.metrics.regions.label(b.ep.Region)).Inc()
			c.ci++
			c.startBranch()
			return
		}
		stop(c.ring)
		res.RemoveHeader("Via")
		c.state = stCompleted
		c.lastUp = []byte(res.String())
		c.sendUpRaw(string(sip.INVITE), code)
		reason := "rejected"
		if code == 482 {
			reason = "loop_detected" // the endpoint routes back to us (or a loop past it)
		}
		c.finish(code, reason)
	}
}

// onNoAck ends a dialog whose 2xx was never ACKed through us within 64*T1
// (the agent gives up retransmitting its 2xx then and sends BYE, RFC 3261
// 13.3.1.4; if that BYE is lost too, the record must not stay for
// max_call_duration).
func (c *call) onNoAck() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.acked {
		return
	}
	c.finish(408, "no_ack")
}

// peerTarget is where an in-dialog request that carries no Route to us
// goes: the other party's remote target from the dialog record (the
// agent's 2xx Contact for the caller's requests, the caller's INVITE
// Contact for the agent's). nil when unknown. c.mu held.
func (c *call) peerTarget(fromCaller bool) *sip.Uri {
	if fromCaller {
		if c.agentTarget == nil {
			return nil
		}
		u := *c.agentTarget
		return &u
	}
	if c.inv == nil {
		return nil
	}
	if ct := c.inv.Contact(); ct != nil {
		u := ct.Address
		return &u
	}
	return nil
}

// labels are region, carrier, origin for the setup histograms.
func (c *call) labels() []string {
	region := ""
	if c.cur != nil {
		region = c.cur.ep.Region
	}
	carrier := c.info.route.Number.Carrier
	if carrier == "" && c.trunk != nil {
		carrier = c.trunk.Carrier
	}
	return []string{c.s.metrics.regions.label(region), carrierLabel(carrier), originLabel(c.info.origin)}
}

// forwardUp pops our Via and sends a downstream response to the caller.
func (c *call) forwardUp(res *sip.Response) {
	res.RemoveHeader("Via")
	c.s.metrics.Responses.WithLabelValues("INVITE", codeLabel(res.StatusCode)).Inc()
	_ = c.s.tp.sendMsg(c.up, res)
}

// replyUp sends a final response generated here to the caller and keeps
// it for retransmission until the ACK (Timer G/H on UDP).
func (c *call) replyUp(code int, reason string, hdrs ...sip.Header) {
	if c.state >= stAccepted || c.lastUp != nil {
		return
	}
	if c.inv == nil {
		return
	}
	res := sip.NewResponseFromRequest(c.inv, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	c.state = stCompleted
	c.lastUp = []byte(res.String())
	c.sendUpRaw(string(sip.INVITE), code)
}

func (c *call) sendUpRaw(method string, code int) {
	c.s.metrics.Responses.WithLabelValues(method, codeLabel(code)).Inc()
	_ = c.s.tp.send(c.up, c.lastUp)
	if c.up.proto == protoUDP {
		c.gInt = t1
		c.timerG = time.AfterFunc(t1, c.retransmitFinal)
	}
}

func (c *call) retransmitFinal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastUp == nil || c.timerG == nil || time.Since(c.start) > c.s.cfg.RingTimeout+timerH {
		return
	}
	_ = c.s.tp.send(c.up, c.lastUp)
	c.gInt *= 2
	if c.gInt > t2 {
		c.gInt = t2
	}
	c.timerG.Reset(c.gInt)
}

// finish ends the call once: event, metrics, media, tables. c.mu held.
func (c *call) finish(code int, reason string) {
	if c.ended {
		return
	}
	c.ended = true
	s := c.s
	stop(c.ring)
	stop(c.ackTimer)
	for _, b := range c.branches {
		stop(b.timerA)
		stop(b.timerF)
	}
	s.active.Add(-1)
	s.metrics.ActiveCalls.Dec()
	if code > 0 {
		s.metrics.Calls.WithLabelValues(classLabel(code)).Inc()
	} else {
		s.metrics.Calls.WithLabelValues("other").Inc()
	}
	c.publish(calls.Ended, code, reason)
	s.dialogs.delIf(c.id, c)
	// Keep only what stray retransmissions need until release: the
	// forwarded INVITE of a branch still waiting for its final response
	// (to ACK a late 487), the final response sent upstream.
	for _, b := range c.branches {
		b.raw = nil
		if b.final || !b.gotResp {
			b.inv = nil
		}
	}
	c.inv = nil
	c.cands = nil
	c.fwdBody = nil
	c.answerIn = nil
	if c.lastUp != nil && c.up.proto == protoUDP {
		c.scheduleRelease(timerH) // until the ACK comes
	} else {
		c.scheduleRelease(linger)
	}
	c.logOutcome(code, reason)
}

// logOutcome is the one log line per call outcome (number masked).
func (c *call) logOutcome(code int, reason string) {
	c.s.log.Info("sip: call", "call_id", c.id, "number", phone.Mask(c.info.route.Number.E164),
		"agent", agentID(c.info.route), "region", c.regionName(), "origin", c.info.origin,
		"status", code, "reason", reason, "setup_ms", c.setupMillis())
}

func (c *call) scheduleRelease(d time.Duration) {
	if c.release == nil {
		c.release = time.AfterFunc(d, c.releaseTx)
		return
	}
	c.release.Reset(d)
}

// releaseTx drops the call's transaction entries (it stays in dialogs
// while the dialog lives).
func (c *call) releaseTx() {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.serverTx.delIf(c.upBranch, c)
	stop(c.timerG)
	c.timerG = nil
	if !c.ended {
		// answered: keep client branch entries for 2xx retransmissions
		// until the dialog ends (finish schedules another release)
		return
	}
	for _, b := range c.branches {
		s.clientTx.delIf(b.id, c)
		b.raw, b.inv = nil, nil
	}
	c.branches = nil
	c.inv = nil
	c.lastUp = nil
}

func (c *call) regionName() string {
	if c.cur != nil {
		return c.cur.ep.Region
	}
	if len(c.cands) > 0 {
		return c.cands[0].Region
	}
	return c.s.cfg.Region // no endpoint chosen: this node's region
}

func (c *call) setupMillis() float64 {
	if c.answeredAt.IsZero() {
		return 0
	}
	return float64(c.answeredAt.Sub(c.start).Microseconds()) / 1000
}

func agentID(r *routing.Route) string {
	if r == nil || r.Agent == nil {
		return ""
	}
	return r.Agent.ID
}

func (c *call) publish(kind string, status int, reason string) {
	r := c.info.route
	e := calls.Event{
		Kind: kind, CallID: c.id, Time: time.Now(), Number: r.Number.E164, Workspace: r.Number.Workspace,
		Agent: agentID(r), Region: c.regionName(), Carrier: r.Number.Carrier, Origin: c.info.origin,
		Source: "sip", Status: status, Reason: reason, SetupMillis: c.setupMillis(),
	}
	if e.Carrier == "" && c.trunk != nil {
		e.Carrier = c.trunk.Carrier
	}
	if kind == calls.Ended {
		if !c.answeredAt.IsZero() {
			e.Duration = time.Since(c.answeredAt)
		}
		if c.media != nil {
			e.Media = c.media.Close()
			c.media = nil
		}
	}
	c.s.events.Publish(e)
}

func (s *Server) handleCancel(req *sip.Request, from peer) {
	c, ok := s.serverTx.get(serverTxKey(req))
	if !ok {
		if tag, _ := req.To().Params.Get("tag"); tag != "" && s.routeIsUs(req) {
			// CANCEL of a re-INVITE: forwarded like the re-INVITE was
			s.forwardInDialog(req, from)
			return
		}
		s.replyStateless(req, from, 481, "Call/Transaction Does Not Exist")
		return
	}
	s.replyStateless(req, from, 200, "OK")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.state >= stAccepted || c.cancelled {
		return
	}
	c.cancelled = true
	c.cancelBranches()
	c.replyUp(487, "Request Terminated")
	c.finish(487, "cancel")
}

func (s *Server) handleAck(req *sip.Request, from peer) {
	if c, ok := s.serverTx.get(serverTxKey(req)); ok {
		c.mu.Lock()
		if c.state == stCompleted {
			// ACK for our non-2xx final: absorbed here (hop by hop)
			stop(c.timerG)
			c.timerG = nil
			c.scheduleRelease(linger)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	toTag, _ := req.To().Params.Get("tag")
	if toTag != "" {
		s.forwardInDialog(req, from)
		return
	}
	s.metrics.Dropped.WithLabelValues("stray_ack").Inc()
}

// forwardInDialog forwards a request inside a dialog (BYE, ACK for 2xx,
// re-INVITE, UPDATE, INFO, ...) by its Route set, statelessly (RFC 3261
// 16.11): responses find their way back by Via; retransmissions are the
// endpoints' business.
func (s *Server) forwardInDialog(req *sip.Request, from peer) {
	s.prober.aliveAddr(from.addr) // an agent sending requests is alive
	isAck := req.IsAck()
	if mf := req.MaxForwards(); mf != nil && *mf == 0 {
		if !isAck {
			s.metrics.Rejected.WithLabelValues("too_many_hops").Inc()
			s.replyStateless(req, from, 483, "Too Many Hops")
		}
		return
	}
	popped := false
	var ours []sip.Uri // the Route entries naming us (their MACs)
	for r := topRoute(req); r != nil && s.isUs(&r.Address); r = topRoute(req) {
		ours = append(ours, r.Address)
		req.RemoveHeader("Route")
		popped = true
	}
	var target *sip.Uri
	if r := topRoute(req); r != nil {
		target = &r.Address
	} else {
		target = &req.Recipient
	}
	callID := string(*req.CallID())
	if s.isUs(target) || !popped {
		// No Route to us (a UA that lost the route set, or a BYE sent to
		// the Request-URI of the INVITE): route it by the dialog record
		// to the other party; a BYE ends the dialog here either way.
		c, ok := s.dialogs.get(callID)
		var pt *sip.Uri
		if ok {
			fromTag, _ := req.From().Params.Get("tag")
			c.mu.Lock()
			pt = c.peerTarget(fromTag == c.fromTag)
			if pt == nil && req.Method == sip.BYE {
				c.finish(200, byeReason(fromTag == c.fromTag))
			}
			c.mu.Unlock()
		}
		if pt == nil || s.isUs(pt) {
			if !isAck {
				s.metrics.Rejected.WithLabelValues("no_dialog").Inc()
				s.replyStateless(req, from, 481, "Call/Transaction Does Not Exist")
			}
			return
		}
		req.Recipient = *pt
		target = &req.Recipient
	}
	// Not an open relay: an in-dialog request is forwarded only inside a
	// dialog we routed (its record here, or our verified Record-Route),
	// toward that dialog's peers (dialogauth.go).
	rec, _ := s.dialogs.get(callID)
	if why := s.inDialogAllowed(rec, callID, ours, target, from); why != "" {
		if !isAck {
			s.metrics.Rejected.WithLabelValues(why).Inc()
			s.replyStateless(req, from, 403, "Forbidden")
		} else {
			s.metrics.Dropped.WithLabelValues(why).Inc()
		}
		s.log.Debug("sip: in-dialog request refused", "method", string(req.Method), "call_id", callID,
			"from", from.addr.String(), "reason", why)
		return
	}
	to, err := s.tp.uriPeerCached(target)
	if err != nil && err != errNeedLookup {
		if !isAck {
			s.replyStateless(req, from, 502, "Bad Gateway")
		}
		return
	}
	if err == errNeedLookup {
		to.proto, _ = uriProto(target) // for our Via; the address comes later
	}
	if mf := req.MaxForwards(); mf != nil {
		*mf = *mf - 1
	} else {
		m := sip.MaxForwardsHeader(70)
		req.AppendHeader(&m)
	}
	// The branch derives from the incoming one; CANCEL and ACK hash as
	// INVITE so that they keep the branch of the INVITE they belong to
	// (RFC 3261 9.1, 17.1.1.3) when it was forwarded this way (re-INVITE).
	inBr, _ := req.Via().Params.Get("branch")
	m := string(req.Method)
	if req.Method == sip.CANCEL || isAck {
		m = string(sip.INVITE)
	}
	req.PrependHeader(s.via(to.proto, statelessBranch(inBr+m, from.addr.String())))

	c, inDialog := s.dialogs.get(callID)
	fromCaller, bye := false, false
	var alt *streamConn
	if inDialog {
		fromTag, _ := req.From().Params.Get("tag")
		fromCaller = fromTag == c.fromTag
		if !fromCaller && c.up.proto != protoUDP {
			// toward a caller that came over TCP/TLS: its connection is
			// the way back when its Contact cannot be reached (NAT)
			alt = c.up.conn
		}
		c.mu.Lock()
		if isAck && fromCaller && c.state == stAccepted && !c.acked {
			c.acked = true
			stop(c.ackTimer)
		}
		if c.media != nil && len(req.Body()) > 0 {
			var nb []byte
			var err error
			if fromCaller {
				nb, err = c.media.RewriteOffer(req.Body())
			} else {
				nb, err = c.media.RewriteAnswer(req.Body())
			}
			if err != nil {
				c.mu.Unlock()
				if !isAck {
					req.RemoveHeader("Via")
					s.replyStateless(req, from, 400, "Bad Request", sip.NewHeader("Warning", `399 callgate "malformed SDP"`))
				}
				return
			}
			req.SetBody(nb)
		}
		// the dialog ends when its BYE passes, whatever the answer (below,
		// once it is known whether it could be sent)
		bye = req.Method == sip.BYE && !c.ended
		c.mu.Unlock()
	}
	var done func(error) // nil outside a recorded dialog: no allocation
	if inDialog {
		done = func(err error) {
			if err != nil {
				s.dialogSendFailed(c, req, from, fromCaller, err)
			}
			if bye {
				c.mu.Lock()
				if err != nil {
					c.finish(200, byeReason(fromCaller)+"_undelivered")
				} else {
					c.finish(200, byeReason(fromCaller))
				}
				c.mu.Unlock()
			}
		}
	}
	if err == errNeedLookup {
		tu := *target
		err = s.tp.sendURIThen(&tu, req, alt, done)
	} else {
		to.alt = alt
		err = s.tp.sendMsgThen(to, req, done)
	}
	if err != errPending && done != nil {
		done(err)
	}
}

// dialogSendFailed: an in-dialog request of a recorded dialog could not
// be sent on (the failure itself is logged and counted by the transport).
// It is logged with the call and counted, and a request other than ACK
// is answered 503 (RFC 3261 16.9: a transport error counts as a 503).
func (s *Server) dialogSendFailed(c *call, req *sip.Request, from peer, fromCaller bool, err error) {
	s.metrics.DialogSendFails.WithLabelValues(methodLabel(string(req.Method))).Inc()
	side := "caller"
	if fromCaller {
		side = "agent"
	}
	s.log.Warn("sip: in-dialog request not delivered", "call_id", c.id, "method", string(req.Method),
		"toward", side, "stage", stageOf(err), "err", err)
	if req.IsAck() {
		return
	}
	req.RemoveHeader("Via") // ours
	s.replyStateless(req, from, 503, "Service Unavailable")
}

func byeReason(fromCaller bool) string {
	if fromCaller {
		return "bye_caller"
	}
	return "bye_agent"
}

// handleResponse routes a response: our probes, our stateful INVITE
// branches, or statelessly by the next Via.
func (s *Server) handleResponse(res *sip.Response, from peer) {
	v := res.Via()
	if v == nil {
		s.metrics.Dropped.WithLabelValues("malformed").Inc()
		return
	}
	br, _ := v.Params.Get("branch")
	if !strings.HasPrefix(br, branchOurs) || trimBrackets(v.Host) != trimBrackets(s.viaHost) {
		s.metrics.Dropped.WithLabelValues("not_ours").Inc()
		return
	}
	cseq := res.CSeq()
	if cseq == nil || res.CallID() == nil {
		s.metrics.Dropped.WithLabelValues("malformed").Inc()
		return
	}
	switch {
	case strings.HasPrefix(br, branchProbe):
		s.prober.onResponse(br, res.StatusCode)
		return
	case strings.HasPrefix(br, branchStateful):
		c, ok := s.clientTx.get(br)
		if !ok {
			if res.StatusCode >= 200 && res.StatusCode < 300 && cseq.MethodName == sip.INVITE {
				break // late 2xx retransmission: forward statelessly
			}
			s.metrics.Dropped.WithLabelValues("stray_response").Inc()
			return
		}
		if cseq.MethodName == sip.INVITE {
			c.onInviteResponse(res, br)
		}
		return // responses to our CANCELs end here
	}
	if res.StatusCode != 503 {
		s.prober.aliveAddr(from.addr) // passive health (BYE, re-INVITE, ... answers)
	}
	// stateless: pop our Via, send by the next one
	res.RemoveHeader("Via")
	nv := res.Via()
	if nv == nil {
		s.metrics.Dropped.WithLabelValues("malformed").Inc()
		return
	}
	if c, ok := s.dialogs.get(string(*res.CallID())); ok && len(res.Body()) > 0 {
		fromTag, _ := res.From().Params.Get("tag")
		c.mu.Lock()
		if c.media != nil {
			var nb []byte
			var err error
			if fromTag == c.fromTag { // request from the caller: answer from the agent
				nb, err = c.media.RewriteAnswer(res.Body())
			} else {
				nb, err = c.media.RewriteOffer(res.Body())
			}
			if err == nil {
				res.SetBody(nb)
			}
		}
		c.mu.Unlock()
	}
	s.metrics.Responses.WithLabelValues(methodLabel(string(cseq.MethodName)), codeLabel(res.StatusCode)).Inc()
	_ = s.tp.sendVia(nv, res)
}

// onMediaTimeout ends an answered call whose media stopped: BYE to both
// sides, built from the dialog state kept here.
func (c *call) onMediaTimeout() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	if c.state != stAccepted {
		c.cancelBranches()
		c.replyUp(408, "Request Timeout")
		c.finish(408, "media_timeout")
		return
	}
	c.sendByes()
	c.finish(200, "media_timeout")
}

// sendByes sends BYE to the agent (its Contact) and to the caller (its
// Contact, through the route set the caller's side recorded).
func (c *call) sendByes() {
	s := c.s
	if c.inv == nil || c.cur == nil {
		return
	}
	inv := c.inv
	seq := inv.CSeq().SeqNo + 1
	// to the agent
	if c.agentTarget != nil {
		if pr, err := uriProto(c.agentTarget); err == nil {
			bye := sip.NewRequest(sip.BYE, *c.agentTarget)
			bye.AppendHeader(s.via(pr, newBranch(branchStateless)))
			mf := sip.MaxForwardsHeader(70)
			bye.AppendHeader(&mf)
			bye.AppendHeader(sip.HeaderClone(inv.From()))
			toH := &sip.ToHeader{DisplayName: inv.To().DisplayName, Address: inv.To().Address,
				Params: inv.To().Params.Clone()}
			toH.Params = toH.Params.Add("tag", c.agentTag)
			bye.AppendHeader(toH)
			bye.AppendHeader(sip.HeaderClone(inv.CallID()))
			bye.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.BYE})
			cl := sip.ContentLengthHeader(0)
			bye.AppendHeader(&cl)
			_ = s.tp.sendURI(c.agentTarget, bye) // a host name not cached is looked up off c.mu
		}
	}
	// to the caller
	if ct := inv.Contact(); ct != nil {
		target := ct.Address
		bye := sip.NewRequest(sip.BYE, target)
		bye.AppendHeader(s.via(c.up.proto, newBranch(branchStateless)))
		for _, h := range inv.GetHeaders("Record-Route") {
			if rr, ok := h.(*sip.RecordRouteHeader); ok {
				bye.AppendHeader(&sip.RouteHeader{Address: rr.Address})
			}
		}
		mf := sip.MaxForwardsHeader(70)
		bye.AppendHeader(&mf)
		fromH := &sip.FromHeader{DisplayName: inv.To().DisplayName, Address: inv.To().Address,
			Params: sip.HeaderParams{{K: "tag", V: c.agentTag}}}
		bye.AppendHeader(fromH)
		bye.AppendHeader(&sip.ToHeader{DisplayName: inv.From().DisplayName, Address: inv.From().Address,
			Params: inv.From().Params.Clone()})
		bye.AppendHeader(sip.HeaderClone(inv.CallID()))
		bye.AppendHeader(&sip.CSeqHeader{SeqNo: 1 << 20, MethodName: sip.BYE})
		cl := sip.ContentLengthHeader(0)
		bye.AppendHeader(&cl)
		_ = s.tp.send(c.up, []byte(bye.String()))
	}
}
