package sip

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// The fast path (issue 15): the agent's 1xx and 2xx to the INVITE of a
// plain call (fastInviteResponse), the ACK and BYE of a dialog this node
// routed, and the answers to such BYEs, are forwarded from the datagram's
// bytes — scanned by fastscan.go and edited in place (our Via added or
// removed, our Route entries popped, Max-Forwards decremented,
// received/rport set) — without sipgo's parser and serialiser, with the
// same outcome as the full path (forwardInDialog, handleResponse,
// onInviteResponse): same checks, same state changes (the answer, the ACK
// seen, the dialog ended by its BYE), same bytes on the wire but for
// header order and spelling.
//
// It takes a message only when everything the full path would look at is
// known to be plain: UDP in and out, a live dialog record of a call whose
// inspect flag is off (features that must see in-dialog traffic set it),
// our Route on top, a target that is an IP, no SDP to rewrite (media
// relay), no CSeq renumbering, no loop, no scanner User-Agent, and a
// message the scanner understands entirely. Anything else returns false
// and goes to the full path, which then decides as it always did.

// fastPath is the Server's fast path state.
type fastPath struct {
	once sync.Once
	via  [2]string // "Via: SIP/2.0/UDP host:port;branch=" per side
	msgs sync.Pool // *fastMsg

	off atomic.Bool // tests: everything to the full path

	// counts (tests, and the proof that the fast path is taken)
	forwarded atomic.Int64
	absorbed  atomic.Int64 // taken and not forwarded (the agent's 100 Trying)
}

func (f *fastPath) init(s *Server) {
	f.once.Do(func() {
		for side := uint8(0); side < 2; side++ {
			f.via[side] = "Via: SIP/2.0/UDP " + s.viaHostOn(side) + ":" + strconv.Itoa(s.viaPortOn(side, protoUDP)) + ";branch="
		}
		f.msgs.New = func() any { return new(fastMsg) }
	})
}

// fastPath forwards data when it is an ACK or BYE of a plain dialog, an
// answer to such a BYE, or a 1xx or 2xx to a plain call's INVITE (a 100
// absorbed); false: the full path must handle it.
func (s *Server) fastPath(data []byte, from peer) bool {
	if from.Proto != protoUDP || from.Addr.Addr().Is6() || s.fast.off.Load() {
		return false // IPv6 peers (dual stack: per-family Via and Record-Route) take the full path
	}
	s.fast.init(s)
	m := s.fast.msgs.Get().(*fastMsg)
	ok := scanFast(data, m)
	if ok {
		if m.isReq {
			ok = s.fastRequest(m, from)
		} else {
			ok = s.fastResponse(m, from)
		}
	}
	m.data = nil
	s.fast.msgs.Put(m)
	return ok
}

// getBytes is get with a []byte key (no string allocated for the lookup).
func (m *shardMap[V]) getBytes(k []byte) (v V, ok bool) {
	sh := &m.s[shardOfBytes(k)]
	sh.mu.Lock()
	v, ok = sh.m[string(k)]
	sh.mu.Unlock()
	return v, ok
}

// uriIsUs is isUs for a scanned URI, without allocating.
func (s *Server) uriIsUs(m *fastMsg, u fastURI) bool {
	h := trimBracketsB(m.str(u.host))
	if s.ag != nil && s.agentHostIs(h) && s.ag.hasPort(u.port) {
		return true
	}
	if string(h) != trimBrackets(s.advHost) {
		if a, ok := parseIP(h); !ok || a != s.tp.UDPAddr().Addr() {
			return false
		}
	}
	port := u.port
	if port == 0 {
		port = 5060
	}
	return port == int(s.tp.UDPAddr().Port()) || port == int(s.tp.TCPAddr().Port()) ||
		(s.tp.HasTLS() && port == int(s.tp.TLSAddr().Port()))
}

// agentHostIs is agentSide.hostIs for a host without brackets.
func (s *Server) agentHostIs(h []byte) bool {
	if bytes.EqualFold(h, []byte(trimBrackets(s.ag.viaHost))) {
		return true
	}
	a, ok := parseIP(h)
	return ok && a == s.ag.tp.UDPAddr().Addr()
}

// parseIP parses an IP address (IPv4 without allocating), unmapped.
func parseIP(h []byte) (netip.Addr, bool) {
	var v4 [4]byte
	n, oct, digits := 0, 0, 0
	for _, c := range h {
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 && oct == 0 {
				n = -1 // a leading zero: not the canonical form ParseAddr takes
			}
			oct = oct*10 + int(c-'0')
			digits++
			if oct > 255 || n < 0 {
				return ipSlow(h)
			}
		case c == '.' && digits > 0 && n < 3:
			v4[n] = byte(oct)
			n, oct, digits = n+1, 0, 0
		default:
			return ipSlow(h)
		}
	}
	if n != 3 || digits == 0 {
		return ipSlow(h)
	}
	v4[3] = byte(oct)
	return netip.AddrFrom4(v4), true
}

func ipSlow(h []byte) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(h))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// udpTarget is where a request for u goes when u is a sip: URI with an IP
// host over UDP; false for anything that needs more (a name: DNS).
func udpTarget(m *fastMsg, u fastURI) (netip.AddrPort, bool) {
	if tp, ok := m.uriParam(u, "transport"); ok && !eqFold(m.str(tp), "udp") {
		return netip.AddrPort{}, false
	}
	if _, ok := m.uriParam(u, "maddr"); ok {
		return netip.AddrPort{}, false
	}
	a, ok := hostAddr(m.str(u.host))
	if !ok {
		return netip.AddrPort{}, false
	}
	port := u.port
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(a, uint16(port)), true
}

// hostAddr parses an IP host (IPv6 in brackets).
func hostAddr(h []byte) (netip.Addr, bool) {
	return parseIP(trimBracketsB(h))
}

// fastRequest is forwardInDialog for a scanned ACK or BYE.
func (s *Server) fastRequest(m *fastMsg, from peer) bool {
	d := m.data
	if m.ourBranch || m.toTag.len() == 0 || (m.maxFwd >= 0 && m.maxFwdVal == 0) {
		return false // loops, requests outside a dialog, 483: the full path
	}
	if m.userAgent.len() > 0 && len(s.guard.scanners) > 0 && s.isScannerUA(string(m.str(m.userAgent))) {
		return false // dropped and counted by the full path
	}
	isAck := d[m.method.a] == 'A'
	if isAck && !bytes.HasPrefix(m.str(m.viaBranch), []byte("z9hG4bK")) {
		return false
	}
	// our Route entries on top, popped; the next hop is the next entry or
	// the Request-URI, and must not be us
	popped := 0
	for popped < m.nroutes && s.uriIsUs(m, m.routes[popped].uri) {
		popped++
	}
	if popped == 0 {
		return false // routed by the dialog record: the full path
	}
	target := m.ruri
	if popped < m.nroutes {
		target = m.routes[popped].uri
	}
	if s.uriIsUs(m, target) {
		return false
	}
	to, ok := udpTarget(m, target)
	if !ok || to.Addr().Is6() {
		return false
	}
	c, ok := s.dialogs.getBytes(m.str(m.callID_()))
	if !ok || c.inspect.Load() {
		return false
	}
	if isAck {
		// an ACK matching a server transaction that sent a non-2xx final
		// is absorbed there (handleAck)
		var kb [256]byte
		k := append(kb[:0], m.str(m.viaBranch)...)
		k = append(k, '|')
		k = append(k, trimBracketsB(m.str(m.viaHost))...)
		if m.viaPort > 0 {
			k = append(k, ':')
			k = strconv.AppendInt(k, int64(m.viaPort), 10)
		}
		if _, hit := s.serverTx.getBytes(k); hit {
			return false
		}
	}
	lastOurs := m.routes[popped-1].uri
	out := sideCarrier
	if s.ag != nil && s.agentHostIs(trimBracketsB(m.str(lastOurs.host))) && s.ag.hasPort(lastOurs.port) {
		out = sideAgent
	}
	fromCaller := string(m.str(m.fromTag)) == c.fromTag
	c.mu.Lock()
	if c.ended || c.inv == nil || c.cur == nil || c.cseqDelta != 0 || c.up.Proto != protoUDP ||
		(c.media != nil && m.contentLen > 0) {
		c.mu.Unlock()
		return false
	}
	if ok, live := c.peerAllowed(hostRef{addr: to.Addr()}, from); !ok || !live {
		c.mu.Unlock()
		return false // refused (403, logged) by the full path
	}
	// from here on the outcome is the full path's
	s.metrics.request(string(m.str(m.method))).Inc()
	s.prober.aliveAddr(from.Addr)
	if isAck && fromCaller && c.state == stAccepted && !c.acked {
		c.acked = true
		stop(c.ring) // the no-ACK timeout (onCallTimer)
	}
	bye := !isAck
	c.mu.Unlock()

	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	s.writeFastRequest(buf, m, from, out, popped, isAck)
	p := peer{Proto: protoUDP, Addr: to, Side: out}
	s.fast.forwarded.Add(1)
	err := s.tpFor(p).SendThen(p, buf.Bytes(), nil)
	if err != nil {
		// as the full path: logged with the call, counted, 503 to the
		// sender; the request as it was forwarded is parsed for the reply
		if fm, perr := s.tp.Parser().ParseSIP(buf.Bytes()); perr == nil {
			if req, ok := fm.(*sip.Request); ok {
				s.dialogSendFailed(c, req, from, fromCaller, err)
			}
		}
	}
	if buf.Cap() <= 1<<16 {
		bufPool.Put(buf)
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
	return true
}

func (m *fastMsg) callID_() span { return m.hdrs[m.callID].value }

func trimBracketsB(h []byte) []byte {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// writeFastRequest writes the forwarded request: the request line, our
// Via, then the headers with the top Via given received/rport, our Route
// entries removed and Max-Forwards decremented (added when missing, as
// the last header), then the body.
func (s *Server) writeFastRequest(buf *bytes.Buffer, m *fastMsg, from peer, out uint8, popped int, isAck bool) {
	d := m.data
	eol := bytes.Index(d, crlf) + 2
	buf.Write(d[:eol])
	buf.WriteString(s.fast.via[out])
	buf.WriteString(branchStateless)
	var hb [16]byte
	fb := s.fastBranch(m, from, isAck)
	hex.Encode(hb[:], fb[:])
	buf.Write(hb[:])
	buf.WriteString("\r\n")
	var nb [8]byte // numbers written (rport, Max-Forwards) without a string each
	// the first Route entry kept (its line and where it starts)
	keepHdr, keepAt := -1, 0
	if popped < m.nroutes {
		keepHdr = m.routes[popped].hdr
		keepAt = m.routes[popped].start
	}
	for i := 0; i < m.nhdrs; i++ {
		h := &m.hdrs[i]
		switch {
		case i == m.topVia:
			if m.viaRport == -1 && !m.viaReceived { // rport asked for: its value set in place
				buf.Write(d[h.line.a:m.viaRportEnd])
				buf.WriteString("=")
				buf.Write(strconv.AppendUint(nb[:0], uint64(from.Addr.Port()), 10))
				buf.Write(d[m.viaRportEnd:m.viaTopEnd])
			} else {
				buf.Write(d[h.line.a:m.viaTopEnd])
			}
			s.writeReceived(buf, m, from)
			if m.viaTopRest >= 0 { // the line's other entries
				buf.WriteString(", ")
				buf.Write(d[m.viaTopRest:h.value.b])
			}
			buf.WriteString("\r\n")
		case h.kind == hkRoute && i < keepHdr || h.kind == hkRoute && keepHdr < 0:
			// every entry of this line was ours
		case i == keepHdr:
			buf.WriteString("Route: ")
			buf.Write(d[keepAt:h.value.b])
			buf.WriteString("\r\n")
		case i == m.maxFwd:
			buf.WriteString("Max-Forwards: ")
			buf.Write(strconv.AppendInt(nb[:0], int64(m.maxFwdVal-1), 10))
			buf.WriteString("\r\n")
		default:
			buf.Write(d[h.line.a:h.line.b])
		}
	}
	if m.maxFwd < 0 {
		buf.WriteString("Max-Forwards: 70\r\n")
	}
	buf.WriteString("\r\n")
	buf.Write(d[m.body:])
}

// writeReceived is setReceived on the top Via's bytes (RFC 3261 18.2.1,
// RFC 3581): the received parameter after the Via's last (the rport
// value is written in place by the caller).
func (s *Server) writeReceived(buf *bytes.Buffer, m *fastMsg, from peer) {
	if m.viaReceived {
		return
	}
	var ib [64]byte
	ip := from.Addr.Addr().AppendTo(ib[:0])
	added := false
	if !bytes.Equal(trimBracketsB(m.str(m.viaHost)), ip) {
		buf.WriteString(";received=")
		buf.Write(ip)
		added = true
	}
	if m.viaRport == -1 && !added { // rport asked for (its value written in place): received too
		buf.WriteString(";received=")
		buf.Write(ip)
	}
}

// fastBranch is statelessBranch(inBranch+method, source address) with no
// allocation: CANCEL and ACK hash as INVITE (forwardInDialog).
func (s *Server) fastBranch(m *fastMsg, from peer, isAck bool) [8]byte {
	const off, prime = 14695981039346656037, 1099511628211
	h := uint64(off)
	add := func(b []byte) {
		for _, c := range b {
			h ^= uint64(c)
			h *= prime
		}
	}
	add(m.str(m.viaBranch))
	if isAck {
		add([]byte("INVITE"))
	} else {
		add(m.str(m.method))
	}
	add([]byte{0})
	var sb [64]byte
	add(from.Addr.AppendTo(sb[:0]))
	var b [8]byte
	for i := range b {
		b[i] = byte(h >> (8 * i))
	}
	return b // an array: a slice of it escaped (two allocations per call)
}

// fastResponse is handleResponse for an answer to a BYE we forwarded
// statelessly, or a 1xx or 2xx to an INVITE we forwarded (a branch of a
// plain call: fastInviteResponse).
func (s *Server) fastResponse(m *fastMsg, from peer) bool {
	if bytes.HasPrefix(m.str(m.viaBranch), []byte(branchStateful)) {
		return s.fastInviteResponse(m)
	}
	if !bytes.HasPrefix(m.str(m.viaBranch), []byte(branchStateless)) || !bytes.Equal(m.str(m.cseqMethod), []byte("BYE")) {
		return false
	}
	if !bytes.Equal(m.str(m.viaHost), []byte(trimBrackets(s.viaHost))) && !bytes.Equal(m.str(m.viaHost), []byte(s.viaHost)) {
		if s.ag == nil {
			return false
		}
		v := sip.ViaHeader{Host: string(trimBracketsB(m.str(m.viaHost))), Port: m.viaPort}
		if !s.ag.ownVia(&v) {
			return false
		}
	}
	if m.nextVia < 0 || !eqFold(m.str(m.next.proto), "udp") {
		return false
	}
	host := m.next.host
	if m.next.received.len() > 0 {
		host = m.next.received
	}
	a, ok := hostAddr(m.str(host))
	if !ok || a.Is6() {
		return false
	}
	port := m.next.port
	if m.next.rport > 0 {
		port = m.next.rport
	}
	if port == 0 {
		port = 5060
	}
	out := s.crossSide(from.Side)
	if c, ok := s.dialogs.getBytes(m.str(m.callID_())); ok {
		// the dialog still held (its BYE usually ended it): as the full
		// path, unless a feature inspects it or its answer needs rewriting
		c.mu.Lock()
		plain := !c.inspect.Load() && c.cseqDelta == 0 && (c.media == nil || m.contentLen == 0)
		crosses := c.downSide() != c.up.Side
		c.mu.Unlock()
		if !plain {
			return false
		}
		if s.ag != nil && !crosses {
			out = from.Side
		}
	}
	if m.status != 503 {
		s.prober.aliveAddr(from.Addr)
	}
	s.metrics.response("BYE", m.status).Inc()
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	writeViaPopped(buf, m)
	p := peer{Proto: protoUDP, Addr: netip.AddrPortFrom(a, uint16(port)), Side: out}
	s.fast.forwarded.Add(1)
	_ = s.tpSide(out).Send(p, buf.Bytes())
	if buf.Cap() <= 1<<16 {
		bufPool.Put(buf)
	}
	return true
}

// fastInviteResponse is handleResponse → onInviteResponse → forwardUp
// for a scanned 100, 1xx or 2xx to a forwarded INVITE: the same state
// changes (inviteResponseSeen, inviteProvisional, inviteAnswer), the
// same message to the caller (our Via popped) but from the datagram's
// bytes. It takes only what the full path would forward unchanged: a
// branch of a call with no relayed media (SDP rewrite), no CSeq
// renumbering (egress auth), no inspect flag, its caller over UDP and
// IPv4, and no session timer to add to a 2xx (sessionAnswer); the header
// policy removes no header the scanner accepts (all standard). A non-2xx
// final (ACK hop by hop, failover), an unknown branch (a late 2xx
// forwarded statelessly) and everything else: the full path.
func (s *Server) fastInviteResponse(m *fastMsg) bool {
	code := m.status
	if code >= 300 || !bytes.Equal(m.str(m.cseqMethod), []byte("INVITE")) || !s.fastOwnVia(m) {
		return false
	}
	br := m.str(m.viaBranch)
	c, ok := s.clientTx.getBytes(br)
	if !ok || c.inspect.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var b *branch
	for _, x := range c.branches {
		if x.id == string(br) {
			b = x
		}
	}
	if b == nil || b.cseqAdd != 0 || c.media != nil || c.up.Proto != protoUDP || c.up.Addr.Addr().Is6() ||
		code >= 200 && !c.sessionAnswerKeeps() {
		return false
	}
	if code >= 200 && c.state < stAccepted && !c.ended && m.contact.len() > 0 {
		// the answer's Contact becomes the agent's target: parsed first,
		// so that one sipgo would not parse stays with the full path
		if sip.ParseUri(string(m.str(m.contact)), &m.contactURI) != nil {
			return false
		}
		m.contactParsed = true
	}
	r := scannedResp{m}
	// from here on the outcome is the full path's
	c.inviteResponseSeen(b, code)
	if code < 200 {
		if !c.inviteProvisional(b, code, r) {
			s.fast.absorbed.Add(1)
			return true // 100 Trying, or a 1xx not for the caller
		}
	} else {
		c.inviteAnswer(b, code, r)
	}
	// forwardUp: our Via popped, to the caller
	s.metrics.response("INVITE", code).Inc()
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	writeViaPopped(buf, m)
	s.fast.forwarded.Add(1)
	_ = s.tpFor(c.up).Send(c.up, buf.Bytes())
	if buf.Cap() <= 1<<16 {
		bufPool.Put(buf)
	}
	return true
}

// fastOwnVia reports whether the top Via's sent-by is one of our IPv4
// listeners (a subset of handleResponse's check: the rest goes there).
func (s *Server) fastOwnVia(m *fastMsg) bool {
	h := trimBracketsB(m.str(m.viaHost))
	if string(h) == trimBrackets(s.viaHost) {
		return true
	}
	return s.ag != nil && s.agentHostIs(h) && s.ag.hasPort(m.viaPort)
}

// writeViaPopped writes the scanned response without its top Via entry.
func writeViaPopped(buf *bytes.Buffer, m *fastMsg) {
	v := m.hdrs[m.topVia]
	buf.Write(m.data[:v.line.a])
	if m.viaTopRest >= 0 { // the line's other entries stay
		buf.WriteString("Via: ")
		buf.Write(m.data[m.viaTopRest:v.value.b])
		buf.WriteString("\r\n")
	}
	buf.Write(m.data[v.line.b:])
}

// scannedResp is a scanned response as the state changes read it
// (inviteResp). One pointer: made an interface without allocating.
type scannedResp struct{ m *fastMsg }

func (r scannedResp) toTag() (string, bool) { return string(r.m.str(r.m.toTag)), true }

func (r scannedResp) hasToTag() bool { return r.m.toTag.len() > 0 }

func (r scannedResp) contactURI() (sip.Uri, bool) {
	if r.m.contactParsed {
		return r.m.contactURI, true
	}
	if r.m.contact.len() == 0 {
		return sip.Uri{}, false
	}
	var u sip.Uri
	if sip.ParseUri(string(r.m.str(r.m.contact)), &u) != nil {
		return sip.Uri{}, false
	}
	return u, true
}

// body is a copy: the datagram's buffer is the read loop's.
func (r scannedResp) body() []byte {
	if r.m.body == len(r.m.data) {
		return nil
	}
	return bytes.Clone(r.m.data[r.m.body:])
}
