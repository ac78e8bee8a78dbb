package sip

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// The fast path's scanner as it was before its rewrite for speed (issue
// 15), kept as the reference FuzzFastScanSame compares scanFast with:
// the same messages taken, the same offsets found.

// refMsg is fastMsg as the reference scanner fills it.
type refMsg struct {
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
func (m *refMsg) str(s span) []byte { return m.data[s.a:s.b] }

// refScanFast scans data; false: not for the fast path.
func refScanFast(data []byte, m *refMsg) bool {
	*m = refMsg{data: data, topVia: -1, nextVia: -1, callID: -1, cseq: -1, from: -1, to: -1, maxFwd: -1, clHdr: -1}
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

func (m *refMsg) startLine(a, b int) bool {
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
func refHeaderKind(n []byte) uint8 {
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
func (m *refMsg) header(a, b int) bool {
	d := m.data
	c := bytes.IndexByte(d[a:b], ':')
	if c <= 0 {
		return false
	}
	kind := refHeaderKind(d[a : a+c])
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
		n, ok := refDigits(d[va : va+sp])
		if !ok || !refIsMethodToken(d[va+sp+1:vb]) {
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
		n, ok := refDigits(d[va:vb])
		if !ok || vb-va > 3 || n > 255 {
			return false
		}
		m.maxFwdVal = n
		return single(&m.maxFwd)
	case hkContentLength:
		n, ok := refDigits(d[va:vb])
		if !ok || vb-va > 5 {
			return false
		}
		m.contentLen = n
		return single(&m.clHdr)
	case hkContentType:
		return refMediaType(d[va:vb])
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

func refDigits(b []byte) (int, bool) {
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

func refIsMethodToken(b []byte) bool {
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

// refMediaType accepts type/subtype with no parameters.
func refMediaType(b []byte) bool {
	s := bytes.IndexByte(b, '/')
	return s > 0 && s < len(b)-1 && refTokenBytes(b[:s]) && refTokenBytes(b[s+1:])
}

// refTokenBytes: RFC 3261 token characters, alphanumerics and -.!%*_+`'~
func refTokenBytes(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !refIsTokenChar(c) {
			return false
		}
	}
	return true
}

func refIsTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '!' || c == '%' || c == '*' || c == '_' || c == '+' || c == '`' || c == '\'' || c == '~'
}

// via scans a Via line: entries SIP/2.0/TRANSPORT SP host[:port]
// *(;name[=value]) separated by commas (SIPp echoes every Via in one line).
func (m *refMsg) via(idx, a, b int) bool {
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
func (m *refMsg) viaEntry(idx, a, b int) (end int, ok bool) {
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
		for q < b && refIsTokenChar(d[q]) {
			q++
		}
		name := span{ns, q}
		if name.len() == 0 || refHasUpper(d[ns:q]) {
			return 0, false // sipgo's parameter names are case-sensitive: left to it
		}
		var val span
		if q < b && d[q] == '=' {
			q++
			vs := q
			for q < b && (refIsTokenChar(d[q]) || d[q] == ':' || d[q] == '[' || d[q] == ']') {
				q++
			}
			val = span{vs, q}
			if val.len() == 0 {
				return 0, false
			}
		}
		switch {
		case refEqFold(d[name.a:name.b], "branch"):
			if branch.len() > 0 || val.len() == 0 {
				return 0, false
			}
			branch = val
			if bytes.HasPrefix(d[val.a:val.b], []byte(branchOurs)) {
				m.ourBranch = true
			}
		case refEqFold(d[name.a:name.b], "received"):
			if received.len() > 0 || val.len() == 0 {
				return 0, false
			}
			received = val
		case refEqFold(d[name.a:name.b], "rport"):
			if rport != 0 {
				return 0, false
			}
			rport, rportEnd = -1, name.b
			if val.len() > 0 {
				n, ok := refDigits(d[val.a:val.b])
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

func refEqFold(b []byte, s string) bool {
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
// letters, refDigits, '.' and '-'); q is where it ends.
func (m *refMsg) hostPort(p, b int) (host span, port, q int, ok bool) {
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
		n, ok := refDigits(d[ps:p])
		if !ok || n == 0 || n > 65535 || p-ps > 5 {
			return host, 0, 0, false
		}
		port = n
	}
	return host, port, p, true
}

// uri scans a sip: URI in data[a:b]: sip:[user@]host[:port]*(;param), no
// password, no headers, nothing quoted or escaped.
func (m *refMsg) uri(a, b int) (u fastURI, ok bool) {
	d := m.data
	if b-a < 5 || !bytes.HasPrefix(d[a:b], []byte("sip:")) {
		return u, false
	}
	p := a + 4
	if at := bytes.IndexByte(d[p:b], '@'); at >= 0 {
		for _, c := range d[p : p+at] {
			if !(refIsTokenChar(c) && c != '%' || c == '&' || c == '=' || c == '$' || c == ',') {
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
		for q < b && refIsTokenChar(d[q]) && d[q] != '%' {
			q++
		}
		if q == ns || refHasUpper(d[ns:q]) {
			return u, false
		}
		if q < b && d[q] == '=' {
			q++
			vs := q
			for q < b && refIsTokenChar(d[q]) && d[q] != '%' {
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
func (m *refMsg) uriParam(u fastURI, name string) (span, bool) {
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
		if refEqFold(d[n.a:n.b], name) {
			return v, true
		}
	}
	return span{}, false
}

// nameAddr scans [display-name] <sip-uri> *(;name=value) (From, To,
// Contact, Record-Route); the tag parameter's value when wantTag.
func (m *refMsg) nameAddr(a, b int, wantTag bool) (tag span, ok bool) {
	d := m.data
	lt := bytes.IndexByte(d[a:b], '<')
	if lt < 0 {
		return tag, false
	}
	if !refDisplayName(d[a : a+lt]) {
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
		for q < b && refIsTokenChar(d[q]) {
			q++
		}
		if q == ns || q >= b || d[q] != '=' || refHasUpper(d[ns:q]) {
			return tag, false
		}
		name := span{ns, q}
		q++
		vs := q
		for q < b && refIsTokenChar(d[q]) {
			q++
		}
		if q == vs {
			return tag, false
		}
		if refEqFold(d[name.a:name.b], "tag") {
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
func (m *refMsg) nameAddrs(a, b int) bool {
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

// refDisplayName accepts nothing, "quoted text" (no escapes) or tokens
// separated by single spaces, followed by optional spaces.
func refDisplayName(b []byte) bool {
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
		if !refIsTokenChar(c) {
			return false
		}
		prevSpace = false
	}
	return true
}

// route scans a Route line: <sip-uri> *(, <sip-uri>), nothing after a '>'
// but a comma.
func (m *refMsg) route(idx, a, b int) bool {
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

func refHasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// FuzzFastScanSame: scanFast takes exactly what the reference scanner
// (the scanner before its rewrite for speed) takes, and finds the same
// offsets and values in it. Seeds: the FuzzFastPath seeds and corpus, the
// datagrams of a SIPp call (testdata/fastcall).
func FuzzFastScanSame(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	for _, d := range fastCallDatagrams(f) {
		f.Add(d)
	}
	corpus, _ := filepath.Glob("testdata/fuzz/FuzzFastPath/*")
	for _, name := range corpus {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		_, v, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
		if !ok || !strings.HasPrefix(v, "[]byte(") {
			f.Fatalf("%s: not a []byte corpus entry", name)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(v, "[]byte("), ")"))
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m fastMsg
		var r refMsg
		got, want := scanFast(data, &m), refScanFast(data, &r)
		if got != want {
			t.Fatalf("scanFast %v, reference %v\n%q", got, want, data)
		}
		if got {
			if d := scanDiff(&m, &r); d != "" {
				t.Fatalf("scanFast and the reference differ: %s\n%q", d, data)
			}
		}
	})
}

// scanDiff names the first field in which m and r differ ("": none).
func scanDiff(m *fastMsg, r *refMsg) string {
	type f struct {
		name      string
		got, want any
	}
	fs := []f{
		{"isReq", m.isReq, r.isReq}, {"method", m.method, r.method}, {"ruri", m.ruri, r.ruri}, {"status", m.status, r.status},
		{"nhdrs", m.nhdrs, r.nhdrs}, {"body", m.body, r.body},
		{"topVia", m.topVia, r.topVia}, {"nextVia", m.nextVia, r.nextVia}, {"callID", m.callID, r.callID}, {"cseq", m.cseq, r.cseq},
		{"from", m.from, r.from}, {"to", m.to, r.to}, {"maxFwd", m.maxFwd, r.maxFwd}, {"clHdr", m.clHdr, r.clHdr},
		{"viaHost", m.viaHost, r.viaHost}, {"viaPort", m.viaPort, r.viaPort}, {"viaBranch", m.viaBranch, r.viaBranch},
		{"viaReceived", m.viaReceived, r.viaReceived}, {"viaRport", m.viaRport, r.viaRport}, {"viaRportEnd", m.viaRportEnd, r.viaRportEnd},
		{"viaTopEnd", m.viaTopEnd, r.viaTopEnd}, {"viaTopRest", m.viaTopRest, r.viaTopRest}, {"viaProto", m.viaProto, r.viaProto},
		{"ourBranch", m.ourBranch, r.ourBranch}, {"next", m.next, r.next},
		{"cseqNum", m.cseqNum, r.cseqNum}, {"cseqMethod", m.cseqMethod, r.cseqMethod}, {"fromTag", m.fromTag, r.fromTag},
		{"toTag", m.toTag, r.toTag}, {"maxFwdVal", m.maxFwdVal, r.maxFwdVal}, {"contentLen", m.contentLen, r.contentLen},
		{"userAgent", m.userAgent, r.userAgent}, {"contact", m.contact, r.contact}, {"nroutes", m.nroutes, r.nroutes},
		{"contactParsed", m.contactParsed, r.contactParsed},
	}
	for _, x := range fs {
		if x.got != x.want {
			return fmt.Sprintf("%s: %v, reference %v", x.name, x.got, x.want)
		}
	}
	for i := 0; i < m.nhdrs; i++ {
		if m.hdrs[i] != r.hdrs[i] {
			return fmt.Sprintf("header %d: %+v, reference %+v", i, m.hdrs[i], r.hdrs[i])
		}
	}
	for i := 0; i < m.nroutes; i++ {
		if m.routes[i] != r.routes[i] {
			return fmt.Sprintf("route %d: %+v, reference %+v", i, m.routes[i], r.routes[i])
		}
	}
	return ""
}

// TestFastScanSameOnMutations: scanFast and the reference scanner agree
// on every seed of FuzzFastScanSame with one byte replaced (by each byte
// the scanners tell apart), deleted or inserted at every position.
func TestFastScanSameOnMutations(t *testing.T) {
	seeds := [][]byte{}
	for _, s := range fastSeeds {
		seeds = append(seeds, []byte(s))
	}
	seeds = append(seeds, fastCallDatagrams(t)...)
	const probes = "\x00\t\n\r \x7f\x80\xff\"%&',-.:;<=>@AFGZ[\\]_`afgz~09$"
	var m fastMsg
	var r refMsg
	check := func(data []byte) {
		got, want := scanFast(data, &m), refScanFast(data, &r)
		if got != want {
			t.Fatalf("scanFast %v, reference %v\n%q", got, want, data)
		}
		if got {
			if d := scanDiff(&m, &r); d != "" {
				t.Fatalf("scanFast and the reference differ: %s\n%q", d, data)
			}
		}
	}
	taken := 0
	for _, s := range seeds {
		if scanFast(s, &m) {
			taken++
		}
		buf := make([]byte, len(s)+1)
		for i := range s {
			for _, c := range []byte(probes) {
				copy(buf, s)
				buf[i] = c
				check(buf[:len(s)])
				copy(buf[i+1:], s[i:]) // c inserted before s[i]
				check(buf[:len(s)+1])
			}
			check(append(append([]byte(nil), s[:i]...), s[i+1:]...))
		}
	}
	if taken < len(seeds)/2 {
		t.Fatalf("the scanner takes %d of %d seeds", taken, len(seeds))
	}
}
