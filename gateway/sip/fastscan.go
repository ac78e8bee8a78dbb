package sip

import (
	"bytes"

	"github.com/emiago/sipgo/sip"
)

// The fast path's scanner (fastpath.go): reads, without allocating, the
// few things the proxy needs from a datagram (start line, top Via, Call-ID,
// CSeq, From and To tags, Route entries, Max-Forwards, Content-Length) as
// offsets into it. It is strict on purpose: anything outside a narrow,
// common form (a header it does not know, folding, a bare LF, quotes or
// escapes where a URI is expected, several values in one Via line, ...)
// makes it refuse, and the message goes to sipgo's full parser. Whatever
// it accepts, sipgo parses to the same values (FuzzFastPath).

// Header kinds the scanner knows; every other header name is a refusal.
const (
	hkVia = iota + 1
	hkFrom
	hkTo
	hkCallID
	hkCSeq
	hkContact
	hkMaxForwards
	hkContentLength
	hkContentType
	hkRoute
	hkRecordRoute
	hkUserAgent
	hkAllow
	hkSupported
	hkServer
	hkReason
)

// fastMaxHeaders bounds the header lines of a message taken by the fast path.
const fastMaxHeaders = 32

// fastMaxRoutes bounds the Route entries of a request taken by the fast path.
const fastMaxRoutes = 8

type span struct{ a, b int } // data[a:b]

func (s span) len() int { return s.b - s.a }

type fastHdr struct {
	kind  uint8
	line  span // the whole line with its CRLF
	value span // trimmed
}

// fastURI is a sip: URI the scanner took apart.
type fastURI struct {
	all    span
	host   span // with brackets for IPv6
	port   int  // 0: none
	params span // after the host[:port], from the first ';' (may be empty)
}

type fastRoute struct {
	hdr   int     // index of the header line
	uri   fastURI // the entry's URI
	start int     // where the entry starts ('<')
}

// viaInfo is what the fast path needs of a Via entry.
type viaInfo struct {
	proto    span // transport (UDP, TCP, ...)
	host     span // sent-by host (brackets kept)
	port     int  // 0: none
	received span // received parameter's value
	rport    int  // 0 absent, -1 present without value, else its value
}

// fastMsg is a scanned message: offsets into data.
type fastMsg struct {
	data   []byte
	isReq  bool
	method span // requests
	ruri   fastURI
	status int // responses

	hdrs  [fastMaxHeaders]fastHdr
	nhdrs int
	body  int // first byte of the body

	// index into hdrs of the single headers (-1: absent); nextVia: the second Via
	topVia, nextVia, callID, cseq, from, to, maxFwd, clHdr int

	viaHost     span // top Via sent-by host
	viaPort     int
	viaBranch   span
	viaReceived bool // top Via has a received parameter
	viaRport    int  // top Via rport: 0 absent, -1 present without value, else its value
	viaRportEnd int  // top Via: where an rport without value ends (its value goes there)
	viaTopEnd   int  // where the top Via entry ends
	viaTopRest  int  // where the next entry of the top Via's line starts (-1: none)
	viaProto    span // top Via transport (UDP, TCP, ...)
	ourBranch   bool // some Via has a branch of ours (a loop, or a response to us)
	next        viaInfo

	cseqNum    uint32
	cseqMethod span
	fromTag    span
	toTag      span
	maxFwdVal  int
	contentLen int
	userAgent  span // User-Agent value (empty: none)
	contact    span // the Contact's URI, inside its <> (empty: none; several: refused)
	routes     [fastMaxRoutes]fastRoute
	nroutes    int

	// set by the fast path (fastInviteResponse): the Contact parsed
	contactURI    sip.Uri
	contactParsed bool
}

// method returns the request method's bytes.
func (m *fastMsg) str(s span) []byte { return m.data[s.a:s.b] }

// scanFast scans data; false: not for the fast path.
func scanFast(data []byte, m *fastMsg) bool {
	*m = fastMsg{data: data, topVia: -1, nextVia: -1, callID: -1, cseq: -1, from: -1, to: -1, maxFwd: -1, clHdr: -1}
	eol := bytes.Index(data, crlf)
	if eol <= 0 || !m.startLine(0, eol) {
		return false
	}
	i := eol + 2
	for {
		if i+2 > len(data) {
			return false
		}
		if data[i] == '\r' {
			if data[i+1] != '\n' {
				return false
			}
			m.body = i + 2
			break
		}
		n := bytes.IndexByte(data[i:], '\n')
		if n < 1 || data[i+n-1] != '\r' || m.nhdrs == fastMaxHeaders {
			return false
		}
		end := i + n - 1 // the line's CR
		if !m.header(i, end) {
			return false
		}
		i = end + 2
	}
	if m.topVia < 0 || m.callID < 0 || m.cseq < 0 || m.from < 0 || m.to < 0 || m.clHdr < 0 {
		return false
	}
	if m.contentLen != len(data)-m.body {
		return false
	}
	if m.isReq && !bytes.Equal(m.str(m.method), m.str(m.cseqMethod)) {
		return false
	}
	return true
}

var crlf = []byte("\r\n")

func (m *fastMsg) startLine(a, b int) bool {
	d := m.data[a:b]
	if bytes.HasPrefix(d, []byte("SIP/2.0 ")) {
		// SIP/2.0 SP 3DIGIT SP reason
		if len(d) < 13 || d[11] != ' ' {
			return false
		}
		code := 0
		for _, c := range d[8:11] {
			if c < '0' || c > '9' {
				return false
			}
			code = code*10 + int(c-'0')
		}
		if code < 100 || code > 699 {
			return false
		}
		for _, c := range d[12:] {
			if c < ' ' && c != '\t' || c >= 0x7f {
				return false
			}
		}
		m.status = code
		return true
	}
	// METHOD SP Request-URI SP SIP/2.0: the fast path takes only ACK and BYE
	var ml int
	switch {
	case bytes.HasPrefix(d, []byte("ACK ")):
		ml = 3
	case bytes.HasPrefix(d, []byte("BYE ")):
		ml = 3
	default:
		return false
	}
	if !bytes.HasSuffix(d, []byte(" SIP/2.0")) {
		return false
	}
	ua, ub := a+ml+1, b-len(" SIP/2.0")
	if ub <= ua {
		return false
	}
	u, ok := m.uri(ua, ub)
	if !ok {
		return false
	}
	m.isReq = true
	m.method = span{a, a + ml}
	m.ruri = u
	return true
}

// headerNames maps a lower-case header name (and compact form) to its kind.
func headerKind(n []byte) uint8 {
	if len(n) == 1 {
		switch n[0] | 0x20 {
		case 'v':
			return hkVia
		case 'f':
			return hkFrom
		case 't':
			return hkTo
		case 'i':
			return hkCallID
		case 'm':
			return hkContact
		case 'l':
			return hkContentLength
		case 'c':
			return hkContentType
		case 'k':
			return hkSupported
		}
		return 0
	}
	var low [16]byte
	if len(n) > len(low) {
		return 0
	}
	for i, c := range n {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	switch string(low[:len(n)]) {
	case "via":
		return hkVia
	case "from":
		return hkFrom
	case "to":
		return hkTo
	case "call-id":
		return hkCallID
	case "cseq":
		return hkCSeq
	case "contact":
		return hkContact
	case "max-forwards":
		return hkMaxForwards
	case "content-length":
		return hkContentLength
	case "content-type":
		return hkContentType
	case "route":
		return hkRoute
	case "record-route":
		return hkRecordRoute
	case "user-agent":
		return hkUserAgent
	case "allow":
		return hkAllow
	case "supported":
		return hkSupported
	case "server":
		return hkServer
	case "reason":
		return hkReason
	}
	return 0
}

// header scans the header line data[a:b] (b at its CR).
func (m *fastMsg) header(a, b int) bool {
	d := m.data
	c := bytes.IndexByte(d[a:b], ':')
	if c <= 0 {
		return false
	}
	kind := headerKind(d[a : a+c])
	if kind == 0 {
		return false
	}
	va, vb := a+c+1, b
	for va < vb && (d[va] == ' ' || d[va] == '\t') {
		va++
	}
	for vb > va && (d[vb-1] == ' ' || d[vb-1] == '\t') {
		vb--
	}
	if va == vb {
		return false
	}
	for _, ch := range d[va:vb] {
		if ch < ' ' && ch != '\t' || ch >= 0x7f {
			return false // controls, and non-ASCII (left to the full parser)
		}
	}
	idx := m.nhdrs
	m.hdrs[idx] = fastHdr{kind: kind, line: span{a, b + 2}, value: span{va, vb}}
	m.nhdrs++
	single := func(p *int) bool {
		if *p >= 0 {
			return false // repeated: validate refuses it
		}
		*p = idx
		return true
	}
	switch kind {
	case hkVia:
		return m.via(idx, va, vb)
	case hkCallID:
		for _, ch := range d[va:vb] {
			if ch == ' ' || ch == '\t' {
				return false
			}
		}
		return single(&m.callID)
	case hkCSeq:
		sp := bytes.IndexByte(d[va:vb], ' ')
		if sp <= 0 || sp > 9 {
			return false
		}
		n, ok := digits(d[va : va+sp])
		if !ok || !isMethodToken(d[va+sp+1:vb]) {
			return false
		}
		m.cseqNum = uint32(n)
		m.cseqMethod = span{va + sp + 1, vb}
		return single(&m.cseq)
	case hkFrom, hkTo:
		tag, ok := m.nameAddr(va, vb, true)
		if !ok {
			return false
		}
		if kind == hkFrom {
			m.fromTag = tag
			return single(&m.from)
		}
		m.toTag = tag
		return single(&m.to)
	case hkContact:
		if _, ok := m.nameAddr(va, vb, false); !ok {
			return false
		}
		if m.contact.len() > 0 {
			return false // several: sipgo's Contact() is the last one; a 2xx has one (RFC 3261 12.1.1)
		}
		lt := va + bytes.IndexByte(d[va:vb], '<') // the URI: a 2xx's is the agent's target
		m.contact = span{lt + 1, lt + 1 + bytes.IndexByte(d[lt+1:vb], '>')}
		return true
	case hkRecordRoute:
		return m.nameAddrs(va, vb)
	case hkMaxForwards:
		n, ok := digits(d[va:vb])
		if !ok || vb-va > 3 || n > 255 {
			return false
		}
		m.maxFwdVal = n
		return single(&m.maxFwd)
	case hkContentLength:
		n, ok := digits(d[va:vb])
		if !ok || vb-va > 5 {
			return false
		}
		m.contentLen = n
		return single(&m.clHdr)
	case hkContentType:
		return mediaType(d[va:vb])
	case hkRoute:
		return m.route(idx, va, vb)
	case hkUserAgent:
		if m.userAgent.len() > 0 {
			return false
		}
		m.userAgent = span{va, vb}
	}
	return true
}

func digits(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func isMethodToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// mediaType accepts type/subtype with no parameters.
func mediaType(b []byte) bool {
	s := bytes.IndexByte(b, '/')
	return s > 0 && s < len(b)-1 && tokenBytes(b[:s]) && tokenBytes(b[s+1:])
}

// tokenBytes: RFC 3261 token characters, alphanumerics and -.!%*_+`'~
func tokenBytes(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '!' || c == '%' || c == '*' || c == '_' || c == '+' || c == '`' || c == '\'' || c == '~'
}

// via scans a Via line: entries SIP/2.0/TRANSPORT SP host[:port]
// *(;name[=value]) separated by commas (SIPp echoes every Via in one line).
func (m *fastMsg) via(idx, a, b int) bool {
	d := m.data
	for {
		end, ok := m.viaEntry(idx, a, b)
		if !ok {
			return false
		}
		if end == b {
			return true
		}
		p := end
		if d[p] != ',' {
			return false // "rport ," is a parameter "rport " to sipgo
		}
		p++
		for p < b && d[p] == ' ' {
			p++
		}
		if p == b {
			return false
		}
		if m.topVia == idx && m.viaTopRest < 0 {
			m.viaTopRest = p
		}
		a = p
	}
}

// viaEntry scans one Via entry from a; end is where it ends.
func (m *fastMsg) viaEntry(idx, a, b int) (end int, ok bool) {
	d := m.data
	if !bytes.HasPrefix(d[a:b], []byte("SIP/2.0/")) {
		return 0, false
	}
	p := a + len("SIP/2.0/")
	ts := p
	for p < b && (d[p] >= 'A' && d[p] <= 'Z' || d[p] >= 'a' && d[p] <= 'z') {
		p++
	}
	if p == ts || p >= b || d[p] != ' ' {
		return 0, false
	}
	proto := span{ts, p}
	p++
	host, port, q, ok := m.hostPort(p, b)
	if !ok {
		return 0, false
	}
	var branch, received span
	rport, rportEnd := 0, 0
	for q < b && d[q] != ',' && d[q] != ' ' {
		if d[q] != ';' {
			return 0, false
		}
		q++
		ns := q
		for q < b && isTokenChar(d[q]) {
			q++
		}
		name := span{ns, q}
		if name.len() == 0 || hasUpper(d[ns:q]) {
			return 0, false // sipgo's parameter names are case-sensitive: left to it
		}
		var val span
		if q < b && d[q] == '=' {
			q++
			vs := q
			for q < b && (isTokenChar(d[q]) || d[q] == ':' || d[q] == '[' || d[q] == ']') {
				q++
			}
			val = span{vs, q}
			if val.len() == 0 {
				return 0, false
			}
		}
		switch {
		case eqFold(d[name.a:name.b], "branch"):
			if branch.len() > 0 || val.len() == 0 {
				return 0, false
			}
			branch = val
			if bytes.HasPrefix(d[val.a:val.b], []byte(branchOurs)) {
				m.ourBranch = true
			}
		case eqFold(d[name.a:name.b], "received"):
			if received.len() > 0 || val.len() == 0 {
				return 0, false
			}
			received = val
		case eqFold(d[name.a:name.b], "rport"):
			if rport != 0 {
				return 0, false
			}
			rport, rportEnd = -1, name.b
			if val.len() > 0 {
				n, ok := digits(d[val.a:val.b])
				if !ok || n == 0 || n > 65535 {
					return 0, false
				}
				rport = n
			}
		}
	}
	if branch.len() == 0 {
		return 0, false // RFC 2543 peers: the full path keys them otherwise
	}
	end = q
	if m.topVia < 0 {
		m.topVia, m.viaTopRest = idx, -1
		m.viaHost, m.viaPort, m.viaBranch, m.viaReceived, m.viaRport, m.viaProto = host, port, branch, received.len() > 0, rport, proto
		m.viaRportEnd = rportEnd
	} else if m.nextVia < 0 {
		m.nextVia = idx
		m.next = viaInfo{proto: proto, host: host, port: port, received: received, rport: rport}
	}
	if m.topVia == idx && m.viaTopEnd == 0 {
		m.viaTopEnd = end
	}
	return end, true
}

func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hostPort scans host[:port] from p (an IPv6 reference in brackets, else
// letters, digits, '.' and '-'); q is where it ends.
func (m *fastMsg) hostPort(p, b int) (host span, port, q int, ok bool) {
	d := m.data
	hs := p
	if p < b && d[p] == '[' {
		for p < b && d[p] != ']' {
			c := d[p]
			if !(c == '[' && p == hs || c == ':' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return host, 0, 0, false
			}
			p++
		}
		if p >= b || p-hs < 3 {
			return host, 0, 0, false
		}
		p++
	} else {
		for p < b && (d[p] >= 'a' && d[p] <= 'z' || d[p] >= 'A' && d[p] <= 'Z' || d[p] >= '0' && d[p] <= '9' || d[p] == '.' || d[p] == '-') {
			p++
		}
		if p == hs {
			return host, 0, 0, false
		}
	}
	host = span{hs, p}
	if p < b && d[p] == ':' {
		p++
		ps := p
		for p < b && d[p] >= '0' && d[p] <= '9' {
			p++
		}
		n, ok := digits(d[ps:p])
		if !ok || n == 0 || n > 65535 || p-ps > 5 {
			return host, 0, 0, false
		}
		port = n
	}
	return host, port, p, true
}

// uri scans a sip: URI in data[a:b]: sip:[user@]host[:port]*(;param), no
// password, no headers, nothing quoted or escaped.
func (m *fastMsg) uri(a, b int) (u fastURI, ok bool) {
	d := m.data
	if b-a < 5 || !bytes.HasPrefix(d[a:b], []byte("sip:")) {
		return u, false
	}
	p := a + 4
	if at := bytes.IndexByte(d[p:b], '@'); at >= 0 {
		for _, c := range d[p : p+at] {
			if !(isTokenChar(c) && c != '%' || c == '&' || c == '=' || c == '$' || c == ',') {
				return u, false
			}
		}
		if at == 0 {
			return u, false
		}
		p += at + 1
	}
	host, port, q, ok := m.hostPort(p, b)
	if !ok {
		return u, false
	}
	ps := q
	for q < b {
		if d[q] != ';' {
			return u, false
		}
		q++
		ns := q
		for q < b && isTokenChar(d[q]) && d[q] != '%' {
			q++
		}
		if q == ns || hasUpper(d[ns:q]) {
			return u, false
		}
		if q < b && d[q] == '=' {
			q++
			vs := q
			for q < b && isTokenChar(d[q]) && d[q] != '%' {
				q++
			}
			if q == vs {
				return u, false
			}
		}
	}
	return fastURI{all: span{a, b}, host: host, port: port, params: span{ps, b}}, true
}

// uriParam returns the value of a URI parameter (lower-case name) and
// whether it is present.
func (m *fastMsg) uriParam(u fastURI, name string) (span, bool) {
	d := m.data
	p := u.params.a
	for p < u.params.b {
		p++ // ';'
		ns := p
		for p < u.params.b && d[p] != '=' && d[p] != ';' {
			p++
		}
		n := span{ns, p}
		var v span
		if p < u.params.b && d[p] == '=' {
			p++
			vs := p
			for p < u.params.b && d[p] != ';' {
				p++
			}
			v = span{vs, p}
		}
		if eqFold(d[n.a:n.b], name) {
			return v, true
		}
	}
	return span{}, false
}

// nameAddr scans [display-name] <sip-uri> *(;name=value) (From, To,
// Contact, Record-Route); the tag parameter's value when wantTag.
func (m *fastMsg) nameAddr(a, b int, wantTag bool) (tag span, ok bool) {
	d := m.data
	lt := bytes.IndexByte(d[a:b], '<')
	if lt < 0 {
		return tag, false
	}
	if !displayName(d[a : a+lt]) {
		return tag, false
	}
	ua := a + lt + 1
	gt := bytes.IndexByte(d[ua:b], '>')
	if gt < 0 {
		return tag, false
	}
	if _, ok := m.uri(ua, ua+gt); !ok {
		return tag, false
	}
	q := ua + gt + 1
	for q < b {
		if d[q] != ';' {
			return tag, false
		}
		q++
		ns := q
		for q < b && isTokenChar(d[q]) {
			q++
		}
		if q == ns || q >= b || d[q] != '=' || hasUpper(d[ns:q]) {
			return tag, false
		}
		name := span{ns, q}
		q++
		vs := q
		for q < b && isTokenChar(d[q]) {
			q++
		}
		if q == vs {
			return tag, false
		}
		if eqFold(d[name.a:name.b], "tag") {
			if !wantTag || tag.len() > 0 {
				return tag, false
			}
			tag = span{vs, q}
		}
	}
	return tag, true
}

// nameAddrs scans one or more name-addr entries separated by commas
// (Record-Route: SIPp echoes every entry in one line).
func (m *fastMsg) nameAddrs(a, b int) bool {
	d := m.data
	for {
		lt := bytes.IndexByte(d[a:b], '<')
		if lt < 0 {
			return false
		}
		gt := bytes.IndexByte(d[a+lt:b], '>')
		if gt < 0 {
			return false
		}
		end := b // the entry ends at the first comma after its '>'
		if c := bytes.IndexByte(d[a+lt+gt:b], ','); c >= 0 {
			end = a + lt + gt + c
		}
		e := end
		for e > a && d[e-1] == ' ' {
			e--
		}
		if _, ok := m.nameAddr(a, e, false); !ok {
			return false
		}
		if end == b {
			return true
		}
		a = end + 1
		for a < b && d[a] == ' ' {
			a++
		}
		if a == b {
			return false
		}
	}
}

// displayName accepts nothing, "quoted text" (no escapes) or tokens
// separated by single spaces, followed by optional spaces.
func displayName(b []byte) bool {
	b = bytes.TrimRight(b, " ")
	if len(b) == 0 {
		return true
	}
	if b[0] == '"' {
		if len(b) < 2 || b[len(b)-1] != '"' {
			return false
		}
		for _, c := range b[1 : len(b)-1] {
			if c == '"' || c == '\\' || c == '\t' {
				return false
			}
		}
		return true
	}
	prevSpace := true
	for _, c := range b {
		if c == ' ' {
			if prevSpace {
				return false
			}
			prevSpace = true
			continue
		}
		if !isTokenChar(c) {
			return false
		}
		prevSpace = false
	}
	return true
}

// route scans a Route line: <sip-uri> *(, <sip-uri>), nothing after a '>'
// but a comma.
func (m *fastMsg) route(idx, a, b int) bool {
	d := m.data
	p := a
	for {
		if p >= b || d[p] != '<' || m.nroutes == fastMaxRoutes {
			return false
		}
		gt := bytes.IndexByte(d[p+1:b], '>')
		if gt < 0 {
			return false
		}
		u, ok := m.uri(p+1, p+1+gt)
		if !ok {
			return false
		}
		end := p + 1 + gt + 1
		m.routes[m.nroutes] = fastRoute{hdr: idx, uri: u, start: p}
		m.nroutes++
		p = end
		for p < b && d[p] == ' ' {
			p++
		}
		if p == b {
			return true
		}
		if d[p] != ',' {
			return false
		}
		p++
		for p < b && d[p] == ' ' {
			p++
		}
	}
}

func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}
