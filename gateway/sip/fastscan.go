package sip

import (
	"bytes"
	"encoding/binary"

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

// fastMsg is a scanned message: offsets into data. Only hdrs[:nhdrs] and
// routes[:nroutes] are the message's: scanFast clears fastHead alone, not
// the arrays (2 KB a datagram).
type fastMsg struct {
	fastHead
	hdrs   [fastMaxHeaders]fastHdr
	routes [fastMaxRoutes]fastRoute
}

// fastHead is what scanFast sets for each message.
type fastHead struct {
	data   []byte
	isReq  bool
	method span // requests
	ruri   fastURI
	status int // responses

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
	nroutes    int

	// set by the fast path (fastInviteResponse): the Contact parsed
	contactURI    sip.Uri
	contactParsed bool
}

// str returns the bytes of s.
func (m *fastMsg) str(s span) []byte { return m.data[s.a:s.b] }

// Byte classes of the scanner's loops (charClass): one table lookup per
// byte instead of a chain of comparisons.
const (
	cTok      = 1 << iota // RFC 3261 token: alphanumerics and -.!%*_+`'~
	cTokLow               // token, no upper-case letter (parameter names: sipgo's are case-sensitive)
	cParam                // URI parameter value: token but '%'
	cParamLow             // URI parameter name: token but '%', no upper-case letter
	cUser                 // URI user part: token but '%', and &=$,
	cHost                 // host name or IPv4 address: alphanumerics, '.', '-'
	cIP6                  // inside an IPv6 reference: hex digits, ':', '.'
	cViaVal               // Via parameter value: token, ':', '[', ']'
)

var charClass = func() (t [256]uint8) {
	for i := range t {
		c := byte(i)
		upper := c >= 'A' && c <= 'Z'
		alnum := c >= 'a' && c <= 'z' || upper || c >= '0' && c <= '9'
		tok := alnum || c == '-' || c == '.' || c == '!' || c == '%' || c == '*' || c == '_' || c == '+' || c == '`' || c == '\'' || c == '~'
		var k uint8
		if tok {
			k |= cTok | cViaVal
			if !upper {
				k |= cTokLow
			}
			if c != '%' {
				k |= cParam | cUser
				if !upper {
					k |= cParamLow
				}
			}
		}
		if c == '&' || c == '=' || c == '$' || c == ',' {
			k |= cUser
		}
		if alnum || c == '.' || c == '-' {
			k |= cHost
		}
		if c == ':' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' {
			k |= cIP6
		}
		if c == ':' || c == '[' || c == ']' {
			k |= cViaVal
		}
		t[i] = k
	}
	return t
}()

// classRun returns the end of the run of bytes of class k in d[p:b]
// (four bytes a round: these runs are tens of bytes, tags and tokens).
func classRun(d []byte, p, b int, k uint8) int {
	d = d[:b]
	for ; p+4 <= len(d); p += 4 {
		if charClass[d[p]]&k == 0 {
			return p
		}
		if charClass[d[p+1]]&k == 0 {
			return p + 1
		}
		if charClass[d[p+2]]&k == 0 {
			return p + 2
		}
		if charClass[d[p+3]]&k == 0 {
			return p + 3
		}
	}
	for p < len(d) && charClass[d[p]]&k != 0 {
		p++
	}
	return p
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// scanFast scans data; false: not for the fast path.
func scanFast(data []byte, m *fastMsg) bool {
	m.fastHead = fastHead{data: data, topVia: -1, nextVia: -1, callID: -1, cseq: -1, from: -1, to: -1, maxFwd: -1, clHdr: -1}
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
		if m.nhdrs == fastMaxHeaders {
			return false
		}
		end := lineEnd(data, i) // the line's CR
		if end < 0 || !m.header(i, end) {
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

// lineEnd returns where the CRLF ending the line that starts at i is, or
// -1 when a byte other than printable ASCII or tab comes first (a bare CR
// or LF, a control, non-ASCII: left to the full parser). Eight bytes at a
// time: a word with no byte below ' ' and none above '~' is skipped whole.
func lineEnd(d []byte, i int) int {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	for i < len(d) {
		for i+8 <= len(d) {
			x := binary.LittleEndian.Uint64(d[i:])
			// bit 7 of a byte: set in x-0x20 and clear in x when it is
			// below ' '; set in x+1 or x when it is 0x7f or above
			if ((x-0x20*ones)&^x|(x+ones)|x)&high != 0 {
				break
			}
			i += 8
		}
		for n := min(i+8, len(d)); i < n; i++ {
			c := d[i]
			if c >= ' ' && c < 0x7f || c == '\t' {
				continue
			}
			if c == '\r' && i+1 < len(d) && d[i+1] == '\n' {
				return i
			}
			return -1
		}
	}
	return -1
}

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

// headerKind is the kind of a header name of letters and '-' (any case,
// compact forms too), chosen by its length and a letter, then compared once.
func headerKind(n []byte) uint8 {
	switch len(n) {
	case 1:
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
	case 2:
		return kindIf(n, "to", hkTo)
	case 3:
		return kindIf(n, "via", hkVia)
	case 4:
		switch n[0] | 0x20 {
		case 'f':
			return kindIf(n, "from", hkFrom)
		case 'c':
			return kindIf(n, "cseq", hkCSeq)
		}
	case 5:
		switch n[0] | 0x20 {
		case 'r':
			return kindIf(n, "route", hkRoute)
		case 'a':
			return kindIf(n, "allow", hkAllow)
		}
	case 6:
		switch n[0] | 0x20 {
		case 's':
			return kindIf(n, "server", hkServer)
		case 'r':
			return kindIf(n, "reason", hkReason)
		}
	case 7:
		switch n[1] | 0x20 {
		case 'a':
			return kindIf(n, "call-id", hkCallID)
		case 'o':
			return kindIf(n, "contact", hkContact)
		}
	case 9:
		return kindIf(n, "supported", hkSupported)
	case 10:
		return kindIf(n, "user-agent", hkUserAgent)
	case 12:
		switch n[0] | 0x20 {
		case 'm':
			return kindIf(n, "max-forwards", hkMaxForwards)
		case 'c':
			return kindIf(n, "content-type", hkContentType)
		case 'r':
			return kindIf(n, "record-route", hkRecordRoute)
		}
	case 14:
		return kindIf(n, "content-length", hkContentLength)
	}
	return 0
}

// kindIf is k when n is name in any case; n is letters and '-' (header
// scans it so), which OR 0x20 makes lower-case.
func kindIf(n []byte, name string, k uint8) uint8 {
	if len(n) != len(name) {
		return 0
	}
	for i := range n {
		if n[i]|0x20 != name[i] {
			return 0
		}
	}
	return k
}

// header scans the header line data[a:b] (b at its CR; lineEnd checked
// its bytes: printable ASCII and tabs).
func (m *fastMsg) header(a, b int) bool {
	d := m.data
	// the name: letters and '-' (every name the scanner knows), then ':'
	p := a
	for p < b && (d[p]|0x20 >= 'a' && d[p]|0x20 <= 'z' || d[p] == '-') {
		p++
	}
	if p == a || p == b || d[p] != ':' {
		return false
	}
	kind := headerKind(d[a:p])
	if kind == 0 {
		return false
	}
	va, vb := p+1, b
	for va < vb && (d[va] == ' ' || d[va] == '\t') {
		va++
	}
	for vb > va && (d[vb-1] == ' ' || d[vb-1] == '\t') {
		vb--
	}
	if va == vb {
		return false
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
		_, tag, ok := m.nameAddr(va, vb, true)
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
		u, _, ok := m.nameAddr(va, vb, false)
		if !ok {
			return false
		}
		if m.contact.len() > 0 {
			return false // several: sipgo's Contact() is the last one; a 2xx has one (RFC 3261 12.1.1)
		}
		m.contact = u // the URI: a 2xx's is the agent's target
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
	return len(b) > 0 && classRun(b, 0, len(b), cTok) == len(b)
}

func isTokenChar(c byte) bool { return charClass[c]&cTok != 0 }

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
	for p < b && d[p]|0x20 >= 'a' && d[p]|0x20 <= 'z' {
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
		q = classRun(d, q, b, cTokLow)
		if q == ns || q < b && isUpper(d[q]) {
			return 0, false // sipgo's parameter names are case-sensitive: left to it
		}
		name, nameEnd := d[ns:q], q
		var val span
		if q < b && d[q] == '=' {
			q++
			vs := q
			q = classRun(d, q, b, cViaVal)
			val = span{vs, q}
			if val.len() == 0 {
				return 0, false
			}
		}
		switch string(name) { // lower-case
		case "branch":
			if branch.len() > 0 || val.len() == 0 {
				return 0, false
			}
			branch = val
			if bytes.HasPrefix(d[val.a:val.b], []byte(branchOurs)) {
				m.ourBranch = true
			}
		case "received":
			if received.len() > 0 || val.len() == 0 {
				return 0, false
			}
			received = val
		case "rport":
			if rport != 0 {
				return 0, false
			}
			rport, rportEnd = -1, nameEnd
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
		p = classRun(d, p+1, b, cIP6)
		if p >= b || d[p] != ']' || p-hs < 3 {
			return host, 0, 0, false
		}
		p++
	} else {
		p = classRun(d, p, b, cHost)
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
	// a user part is the run of user characters ending at an '@' (an
	// '@' anywhere else fails below: no host, port or parameter has one)
	if q := classRun(d, p, b, cUser); q < b && d[q] == '@' {
		if q == p {
			return u, false
		}
		p = q + 1
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
		q = classRun(d, q, b, cParamLow)
		if q == ns || q < b && isUpper(d[q]) {
			return u, false
		}
		if q < b && d[q] == '=' {
			q++
			vs := q
			q = classRun(d, q, b, cParam)
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
// Contact, Record-Route): the URI inside the <>, and the tag parameter's
// value when wantTag.
func (m *fastMsg) nameAddr(a, b int, wantTag bool) (u, tag span, ok bool) {
	d := m.data
	lt := bytes.IndexByte(d[a:b], '<')
	if lt < 0 {
		return u, tag, false
	}
	gt := bytes.IndexByte(d[a+lt+1:b], '>')
	if gt < 0 {
		return u, tag, false
	}
	return m.nameAddrAt(a, a+lt, a+lt+1+gt, b, wantTag)
}

// nameAddrAt is nameAddr with the first '<' at lt and the first '>'
// after it at gt.
func (m *fastMsg) nameAddrAt(a, lt, gt, b int, wantTag bool) (u, tag span, ok bool) {
	d := m.data
	if !displayName(d[a:lt]) {
		return u, tag, false
	}
	if _, ok := m.uri(lt+1, gt); !ok {
		return u, tag, false
	}
	q := gt + 1
	for q < b {
		if d[q] != ';' {
			return u, tag, false
		}
		q++
		ns := q
		q = classRun(d, q, b, cTokLow)
		if q == ns || q >= b || d[q] != '=' { // an upper-case letter too: sipgo's names are case-sensitive
			return u, tag, false
		}
		name := d[ns:q]
		q++
		vs := q
		q = classRun(d, q, b, cTok)
		if q == vs {
			return u, tag, false
		}
		if string(name) == "tag" {
			if !wantTag || tag.len() > 0 {
				return u, tag, false
			}
			tag = span{vs, q}
		}
	}
	return span{lt + 1, gt}, tag, true
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
		lt += a
		gt := bytes.IndexByte(d[lt:b], '>')
		if gt < 0 {
			return false
		}
		gt += lt
		end := b // the entry ends at the first comma after its '>'
		if c := bytes.IndexByte(d[gt:b], ','); c >= 0 {
			end = gt + c
		}
		e := end
		for e > a && d[e-1] == ' ' {
			e--
		}
		if _, _, ok := m.nameAddrAt(a, lt, gt, e, false); !ok {
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
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
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
