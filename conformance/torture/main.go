// Command torture sends the RFC 4475 torture messages to a running SIP
// gateway, one at a time over UDP, and prints per message what came back
// against what the RFC expects (conformance/rfc4475/expect.tsv), then
// "N of M handled as the RFC expects". conformance/run.sh runs it inside a
// network namespace with only loopback.
//
// Responses are collected on 127.0.0.1 UDP and TCP ports 5060, 5050, 5070
// and 5080: most messages' Via has no rport, so the response goes to the
// source IP (received=) on the Via's sent-by port, 5060 by default
// (RFC 3261 18.2.2); quotbal names 5050, mpart01 names 5070 with rport and a
// Route to 5080. Requests arriving on those ports are requests the gateway
// forwarded. After each message an OPTIONS probe checks that the gateway
// still answers.
//
//	torture -dir ../shared/testdata/rfc4475 -target 127.0.0.2:5060 [-number 1228...]
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callgate/callgate/conformance/rfc4475"
	"github.com/callgate/callgate/conformance/rfc5118"
)

// received is one SIP message that came back to one of our sockets.
type received struct {
	local  string // "udp/5060", "tcp/5050", ...
	raw    []byte
	status int    // 0 for a request
	method string // request method, or the CSeq method of a response
	reason string
	callID string
	hdr    map[string][]string
	body   []byte
}

func (r *received) String() string {
	if r.status == 0 {
		return fmt.Sprintf("request %s forwarded to %s", r.method, r.local)
	}
	return fmt.Sprintf("%d %s (CSeq %s, to %s)", r.status, r.reason, r.method, r.local)
}

var compact = map[string]string{"i": "call-id", "v": "via", "l": "content-length", "f": "from", "t": "to", "m": "contact", "c": "content-type", "k": "supported"}

func parse(local string, b []byte) *received {
	r := &received{local: local, raw: b, hdr: map[string][]string{}}
	head, body, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	r.body = body
	lines := strings.Split(string(head), "\r\n")
	first := lines[0]
	if strings.HasPrefix(first, "SIP/2.0 ") {
		parts := strings.SplitN(first, " ", 3)
		r.status, _ = strconv.Atoi(parts[1])
		if len(parts) == 3 {
			r.reason = parts[2]
		}
	} else {
		r.method, _, _ = strings.Cut(first, " ")
	}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if full, ok := compact[k]; ok {
			k = full
		}
		r.hdr[k] = append(r.hdr[k], strings.TrimSpace(v))
	}
	if v := r.hdr["call-id"]; len(v) > 0 {
		r.callID = v[0]
	}
	if r.status != 0 {
		if v := r.hdr["cseq"]; len(v) > 0 {
			if f := strings.Fields(v[0]); len(f) == 2 {
				r.method = f[1]
			}
		}
	}
	return r
}

// collector receives on every port we listen on.
type collector struct {
	mu   sync.Mutex
	got  []*received
	udp  *net.UDPConn // the 5060 socket, also used to send
	udp6 *net.UDPConn // [::1]:5060, sends the IPv6 messages (listen6)
}

// listen6 receives on [::1] UDP ports (labelled udp6/PORT); 5060 also
// sends.
func (c *collector) listen6(ports []int) error {
	for _, p := range ports {
		u, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback, Port: p})
		if err != nil {
			return fmt.Errorf("listen udp [::1]:%d: %w", p, err)
		}
		if p == 5060 {
			c.udp6 = u
		}
		go func(p int) {
			buf := make([]byte, 65536)
			for {
				n, _, err := u.ReadFromUDP(buf)
				if err != nil {
					return
				}
				c.add(parse(fmt.Sprintf("udp6/%d", p), append([]byte(nil), buf[:n]...)))
			}
		}(p)
	}
	return nil
}

func (c *collector) add(r *received) {
	c.mu.Lock()
	c.got = append(c.got, r)
	c.mu.Unlock()
}

func (c *collector) take() []*received {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.got
	c.got = nil
	return g
}

func (c *collector) listen(ports []int) error {
	for _, p := range ports {
		ua, _ := net.ResolveUDPAddr("udp", fmt.Sprintf("127.0.0.1:%d", p))
		u, err := net.ListenUDP("udp", ua)
		if err != nil {
			return fmt.Errorf("listen udp %d: %w", p, err)
		}
		if p == 5060 {
			c.udp = u
		}
		go func(p int) {
			buf := make([]byte, 65536)
			for {
				n, _, err := u.ReadFromUDP(buf)
				if err != nil {
					return
				}
				c.add(parse(fmt.Sprintf("udp/%d", p), append([]byte(nil), buf[:n]...)))
			}
		}(p)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return fmt.Errorf("listen tcp %d: %w", p, err)
		}
		go func(p int) {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go c.readStream(fmt.Sprintf("tcp/%d", p), conn)
			}
		}(p)
	}
	return nil
}

// readStream frames SIP messages on a TCP connection by Content-Length.
func (c *collector) readStream(local string, conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	for {
		var head bytes.Buffer
		clen := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			t := strings.TrimRight(line, "\r\n")
			if t == "" {
				if head.Len() <= 2 { // keep-alive CRLF
					head.Reset()
					continue
				}
				break
			}
			if k, v, ok := strings.Cut(t, ":"); ok {
				k = strings.ToLower(strings.TrimSpace(k))
				if k == "content-length" || k == "l" {
					clen, _ = strconv.Atoi(strings.TrimSpace(v))
				}
			}
		}
		body := make([]byte, clen)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		c.add(parse(local, append(head.Bytes(), body...)))
	}
}

// rule says what the RFC expects of a proxy (or UAS) for one message.
type rule struct {
	want  string // printed expectation
	judge func(m []byte, rs []*received) (bool, string)
}

func finals(rs []*received) []*received {
	var out []*received
	for _, r := range rs {
		if r.status >= 200 {
			out = append(out, r)
		}
	}
	return out
}

func requests(rs []*received) []*received {
	var out []*received
	for _, r := range rs {
		if r.status == 0 {
			out = append(out, r)
		}
	}
	return out
}

// codes: a final response with one of these codes.
func codes(want string, cs ...int) rule {
	return rule{want, func(_ []byte, rs []*received) (bool, string) {
		f := finals(rs)
		if len(f) == 0 {
			return false, "no final response"
		}
		for _, c := range cs {
			if f[0].status == c {
				return true, ""
			}
		}
		return false, fmt.Sprintf("final %d is not %s", f[0].status, want)
	}}
}

// parsed: the message was accepted as well-formed: a final response that
// is not a parse error (400, 505), or the request was forwarded intact.
func parsed(want string) rule {
	return rule{want, func(m []byte, rs []*received) (bool, string) {
		for _, r := range requests(rs) {
			_, body, _ := bytes.Cut(m, []byte("\r\n\r\n"))
			if bytes.Equal(r.body, body) {
				return true, ""
			}
			return false, fmt.Sprintf("forwarded with a body of %d bytes, sent %d", len(r.body), len(body))
		}
		f := finals(rs)
		if len(f) == 0 {
			return false, "no final response"
		}
		if f[0].status == 400 || f[0].status == 505 {
			return false, fmt.Sprintf("rejected as malformed (%d)", f[0].status)
		}
		return true, ""
	}}
}

// answered: any final response (the RFC allows rejecting or a liberal
// reading), the point being the gateway neither breaks nor stays silent.
func answered(want string) rule {
	return rule{want, func(_ []byte, rs []*received) (bool, string) {
		if len(finals(rs)) == 0 && len(requests(rs)) == 0 {
			return false, "no final response"
		}
		return true, ""
	}}
}

// silent: a response sent to the gateway is dropped (nothing comes back).
func silent(want string) rule {
	return rule{want, func(_ []byte, rs []*received) (bool, string) {
		if len(rs) > 0 {
			return false, "something came back"
		}
		return true, ""
	}}
}

func headerTags(m []byte, name string) []string {
	var tags []string
	for _, l := range strings.Split(string(m), "\r\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			for _, t := range strings.Split(v, ",") {
				tags = append(tags, strings.TrimSpace(t))
			}
		}
	}
	return tags
}

// badExtension: 420 with Unsupported listing every Proxy-Require (or
// Require) option tag of the request.
func badExtension(want string) rule {
	return rule{want, func(m []byte, rs []*received) (bool, string) {
		f := finals(rs)
		if len(f) == 0 {
			return false, "no final response"
		}
		if f[0].status != 420 {
			return false, fmt.Sprintf("final %d, not 420", f[0].status)
		}
		uns := strings.ToLower(strings.Join(f[0].hdr["unsupported"], ","))
		ok := func(tags []string) bool {
			for _, t := range tags {
				if !strings.Contains(uns, strings.ToLower(t)) {
					return false
				}
			}
			return len(tags) > 0
		}
		if ok(headerTags(m, "Proxy-Require")) || ok(headerTags(m, "Require")) {
			return true, ""
		}
		return false, "Unsupported: " + uns
	}}
}

// oneAnswer: one final response, to the REGISTER, not 400; the octets
// after its Content-Length: 0 body (an INVITE) are ignored.
func oneAnswer(want string) rule {
	return rule{want, func(_ []byte, rs []*received) (bool, string) {
		var reg, inv int
		for _, r := range rs {
			if r.status >= 200 && r.method == "REGISTER" {
				reg++
				if r.status == 400 {
					return false, "REGISTER rejected with 400"
				}
			}
			if r.method == "INVITE" {
				inv++
			}
		}
		if inv > 0 {
			return false, "the INVITE-looking octets were processed"
		}
		if reg != 1 {
			return false, fmt.Sprintf("%d final responses to the REGISTER", reg)
		}
		return true, ""
	}}
}

// ruleFor is the judge for one expectation of conformance/rfc4475.
func ruleFor(e rfc4475.Expectation) (rule, error) {
	switch e.Rule.Kind {
	case rfc4475.Codes:
		return codes(e.Want, e.Rule.Codes...), nil
	case rfc4475.Parsed:
		return parsed(e.Want), nil
	case rfc4475.Answered:
		return answered(e.Want), nil
	case rfc4475.Silent:
		return silent(e.Want), nil
	case rfc4475.BadExtension:
		return badExtension(e.Want), nil
	case rfc4475.OneAnswer:
		return oneAnswer(e.Want), nil
	}
	return rule{}, fmt.Errorf("%s: no judge for rule %q", e.Name, e.Rule)
}

// expectedPort is where RFC 3261 18.2.2 sends the response: the source
// port with rport, else the Via's sent-by port, else 5060.
func expectedPort(m []byte) int {
	for _, l := range strings.Split(string(m), "\r\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if k != "via" && k != "v" {
			continue
		}
		v, _, _ = strings.Cut(v, ",")
		params := strings.Split(v, ";")
		for _, p := range params[1:] {
			if strings.TrimSpace(p) == "rport" {
				return 5060 // our source port
			}
		}
		f := strings.Fields(params[0])
		if len(f) == 0 {
			return 5060
		}
		sentBy := f[len(f)-1]
		if i := strings.LastIndex(sentBy, ":"); i >= 0 && !strings.HasSuffix(sentBy, "]") {
			if p, err := strconv.Atoi(sentBy[i+1:]); err == nil {
				return p
			}
		}
		return 5060
	}
	return 5060
}

func main() {
	dir := flag.String("dir", rfc4475.CorpusDir, "directory of the torture messages (NAME.dat); the expectations are conformance/rfc4475/expect.tsv, built in")
	target := flag.String("target", "127.0.0.2:5060", "gateway SIP address (UDP)")
	number := flag.String("number", "", "a routed number: first send a valid INVITE to it (sanity check)")
	wait := flag.Duration("wait", 1500*time.Millisecond, "how long to wait for answers to one message")
	verbose := flag.Bool("v", false, "print every message that came back in full")
	agent := flag.String("agent", "", "run only the agent: answer OPTIONS 200 and INVITE 486 on this UDP address")
	target6 := flag.String("target6", "", "gateway SIP address over IPv6 (UDP, e.g. [::1]:5062): then the RFC 5118 messages (conformance/rfc5118, built in) are sent too, IPv6-addressed ones from [::1]:5060")
	flag.Parse()
	if *agent != "" {
		if err := runAgent(*agent); err != nil {
			fmt.Fprintln(os.Stderr, "torture agent:", err)
			os.Exit(2)
		}
		return
	}
	if err := run(*dir, *target, *target6, *number, *wait, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		os.Exit(2)
	}
}

// item is one torture message to send and judge.
type item struct {
	name, section, kind string
	msg                 []byte
	judge               rule
	v6                  bool // sent from [::1]:5060: the answer must come back over IPv6
}

func run(dir, target, target6, number string, wait time.Duration, verbose bool) error {
	exp, err := rfc4475.Load()
	if err != nil {
		return err
	}
	var items4475 []item
	for _, e := range exp {
		r, err := ruleFor(e)
		if err != nil {
			return err
		}
		m, err := os.ReadFile(filepath.Join(dir, e.Name+".dat"))
		if err != nil {
			return fmt.Errorf("corpus: %w", err)
		}
		items4475 = append(items4475, item{name: e.Name, section: e.Section, kind: e.Kind, msg: m, judge: r})
	}
	taddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return err
	}
	c := &collector{}
	if err := c.listen([]int{5060, 5050, 5070, 5080}); err != nil {
		return err
	}
	var items5118 []item
	var taddr6 *net.UDPAddr
	if target6 != "" {
		if taddr6, err = net.ResolveUDPAddr("udp6", target6); err != nil {
			return err
		}
		if items5118, err = rfc5118Items(); err != nil {
			return err
		}
		// answers go to the Via's port: 5060, mult-ip-in-header's 6050,
		// and (over IPv4) ipv4-mapped-ipv6's 19823
		if err := c.listen6([]int{5060, 6050}); err != nil {
			return err
		}
		if err := c.listen([]int{19823}); err != nil {
			return err
		}
	}
	send := func(b []byte) error { _, err := c.udp.WriteToUDP(b, taddr); return err }
	sendItem := func(it item) error {
		if it.v6 {
			_, err := c.udp6.WriteToUDP(it.msg, taddr6)
			return err
		}
		return send(it.msg)
	}

	// until: poll the collected messages until done says so or d passes
	until := func(d time.Duration, done func([]*received) bool) []*received {
		var all []*received
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			all = append(all, c.take()...)
			if done != nil && done(all) {
				// a moment more for duplicates and strays
				time.Sleep(150 * time.Millisecond)
				return append(all, c.take()...)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return append(all, c.take()...)
	}
	probeN := 0
	alive := func() bool {
		probeN++
		id := fmt.Sprintf("torture-probe-%d", probeN)
		msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bK-probe-%d\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p%d\r\nTo: <sip:%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			target, probeN, probeN, target, id)
		for try := 0; try < 3; try++ {
			if send([]byte(msg)) != nil {
				return false
			}
			got := until(time.Second, func(rs []*received) bool {
				for _, r := range rs {
					if r.callID == id && r.status >= 200 {
						return true
					}
				}
				return false
			})
			for _, r := range got {
				if r.callID == id && r.status >= 200 {
					return true
				}
			}
		}
		return false
	}
	if !alive() {
		return fmt.Errorf("the gateway at %s does not answer OPTIONS", target)
	}
	if number != "" {
		id := "torture-sanity-invite"
		msg := fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bK-sanity1\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:+15005550006@127.0.0.1>;tag=s1\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\n"+
			"CSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n", number, target, number, target, id)
		if err := send([]byte(msg)); err != nil {
			return err
		}
		got := until(5*time.Second, func(rs []*received) bool { return len(finals(rs)) > 0 })
		var desc []string
		final := 0
		for _, r := range got {
			desc = append(desc, r.String())
			if r.status >= 200 && final == 0 {
				final = r.status
			}
		}
		fmt.Printf("sanity: INVITE to %s routed to the agent: %s\n", number, strings.Join(desc, "; "))
		if final >= 300 {
			ack := fmt.Sprintf("ACK sip:%s@%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bK-sanity1\r\n"+
				"Max-Forwards: 70\r\nFrom: <sip:+15005550006@127.0.0.1>;tag=s1\r\nTo: <sip:%s@%s>;tag=%s\r\nCall-ID: %s\r\n"+
				"CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", number, target, number, target, toTag(got), id)
			_ = send([]byte(ack))
		}
		if final != 486 {
			return fmt.Errorf("sanity INVITE: want the agent's 486 relayed back, got final %d", final)
		}
		until(300*time.Millisecond, nil)
	}

	corpus := func(title string, items []item) (pass int, fails []string, err error) {
		fmt.Printf("\n== %s\n", title)
		pass, notes := 0, 0
		for _, it := range items {
			good, note, up, err := judgeOne(c, it, sendItem, until, wait, verbose)
			if err != nil {
				return pass, fails, err
			}
			if good {
				pass++
			} else {
				fails = append(fails, it.name)
			}
			if note {
				notes++
			}
			if !up || !alive() {
				return pass, fails, fmt.Errorf("the gateway stopped answering after %s; %d of %d handled as the RFC expects before that", it.name, pass, len(items))
			}
		}
		sort.Strings(fails)
		fmt.Printf("\n%d of %d handled as the RFC expects\n", pass, len(items))
		fmt.Printf("%d final responses with header notes (Via received, copied From/To/Call-ID/CSeq, To tag)\n", notes)
		if len(fails) > 0 {
			fmt.Printf("not as expected: %s\n", strings.Join(fails, " "))
		}
		return pass, fails, nil
	}
	pass4475, fails4475, err := corpus("RFC 4475 (UDP from 127.0.0.1:5060 to "+target+")", items4475)
	if err != nil {
		return err
	}
	pass5118, fails5118 := 0, []string(nil)
	if len(items5118) > 0 {
		if pass5118, fails5118, err = corpus("RFC 5118 (IPv6 from [::1]:5060 to "+target6+", IPv4 from 127.0.0.1:5060 to "+target+")", items5118); err != nil {
			return err
		}
	}
	fmt.Printf("\nRFC 4475: %d of %d\n", pass4475, len(items4475))
	if len(items5118) > 0 {
		fmt.Printf("RFC 5118: %d of %d\n", pass5118, len(items5118))
	}
	if len(fails4475)+len(fails5118) > 0 {
		os.Exit(1)
	}
	return nil
}

// judgeOne sends one message and prints and judges what came back (and
// where). The caller checks afterwards that the gateway still answers.
func judgeOne(c *collector, it item, sendItem func(item) error, until func(time.Duration, func([]*received) bool) []*received,
	wait time.Duration, verbose bool) (good, note, up bool, err error) {
	m, r := it.msg, it.judge
	c.take()
	if err := sendItem(it); err != nil {
		return false, false, false, fmt.Errorf("%s: send: %w", it.name, err)
	}
	var got []*received
	if it.kind == "response" {
		got = until(wait, nil)
	} else {
		got = until(wait, func(rs []*received) bool { return len(finals(rs)) > 0 || len(requests(rs)) > 0 })
	}
	good, why := r.judge(m, got)
	// the response must go where RFC 3261 18.2.2 says, over the family
	// the request came in on
	if good && len(finals(got)) > 0 {
		want := fmt.Sprintf("/%d", expectedPort(m))
		f := finals(got)[0]
		switch {
		case !strings.HasSuffix(f.local, want):
			good, why = false, fmt.Sprintf("response sent to %s, RFC 3261 18.2.2 says port %s", f.local, want[1:])
		case it.v6 != strings.HasPrefix(f.local, "udp6/"):
			good, why = false, fmt.Sprintf("response sent to %s, not over the family the request came in on", f.local)
		}
	}
	var desc []string
	for _, g := range got {
		desc = append(desc, g.String())
	}
	if len(desc) == 0 {
		desc = []string{"nothing"}
	}
	verdict := "ok  "
	if !good {
		verdict = "FAIL"
	}
	fmt.Printf("%s %-10s %-8s %-17s got: %s\n", verdict, it.name, it.section, it.kind, strings.Join(desc, "; "))
	fmt.Printf("     %-10s expected: %s\n", "", r.want)
	if !good {
		fmt.Printf("     %-10s why: %s\n", "", why)
	}
	source := "127.0.0.1"
	if it.v6 {
		source = "::1"
	}
	for _, f := range finals(got) {
		if probs := headerProblems(m, f, source); len(probs) > 0 {
			note = true
			fmt.Printf("     %-10s note (RFC 3261 8.2.6.2/18.2.1, not counted): %s\n", "", strings.Join(probs, "; "))
		}
		break
	}
	if verbose {
		for _, g := range got {
			fmt.Printf("     ---- %s\n%s\n", g.local, indent(string(g.raw)))
		}
	}
	return good, note, true, nil
}

// rfc5118Items are the RFC 5118 messages (conformance/rfc5118), as sent.
func rfc5118Items() ([]item, error) {
	exp, err := rfc5118.Load()
	if err != nil {
		return nil, err
	}
	var out []item
	for _, e := range exp {
		arch, err := rfc5118.Message(e.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, item{name: e.Name, section: e.Section, kind: "ipv4", msg: rfc5118.Wire(arch),
			judge: ruleFor5118(e), v6: e.IPv6})
		if e.IPv6 {
			out[len(out)-1].kind = "ipv6"
		}
	}
	return out, nil
}

// ruleFor5118 is the judge of an RFC 5118 expectation (parsed or codes).
func ruleFor5118(e rfc5118.Expectation) rule {
	if e.Rule.Kind == rfc4475.Codes {
		return codes(e.Want, e.Rule.Codes...)
	}
	return parsed(e.Want)
}

func toTag(rs []*received) string {
	for _, r := range rs {
		for _, v := range r.hdr["to"] {
			if _, t, ok := strings.Cut(v, ";tag="); ok {
				t, _, _ = strings.Cut(t, ";")
				return t
			}
		}
	}
	return ""
}

func indent(s string) string {
	return "     | " + strings.ReplaceAll(strings.TrimRight(s, "\r\n"), "\r\n", "\n     | ")
}

// runAgent is the agent endpoint the sanity INVITE is routed to: 200 to
// OPTIONS (the gateway's health probes), 486 Busy Here to INVITE (a final
// answer that needs no dialog), nothing to ACK, 200 to anything else.
func runAgent(addr string) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	u, err := net.ListenUDP("udp", ua)
	if err != nil {
		return err
	}
	buf := make([]byte, 65536)
	for {
		n, from, err := u.ReadFromUDP(buf)
		if err != nil {
			return err
		}
		r := parse("agent", append([]byte(nil), buf[:n]...))
		if r.status != 0 || r.method == "ACK" || r.method == "" {
			continue
		}
		code, reason := 200, "OK"
		if r.method == "INVITE" {
			code, reason = 486, "Busy Here"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
		for _, l := range strings.Split(string(r.raw), "\r\n")[1:] {
			if l == "" {
				break
			}
			k, _, _ := strings.Cut(l, ":")
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "via", "v", "from", "f", "call-id", "i", "cseq":
				b.WriteString(l + "\r\n")
			case "to", "t":
				b.WriteString(l)
				if !strings.Contains(l, ";tag=") {
					b.WriteString(";tag=agent1")
				}
				b.WriteString("\r\n")
			}
		}
		b.WriteString("Content-Length: 0\r\n\r\n")
		_, _ = u.WriteToUDP([]byte(b.String()), from)
	}
}

// requestHeaders returns the request's header values by lower-case
// (expanded) name, from the raw message.
func requestHeaders(m []byte) map[string][]string {
	r := parse("", m)
	return r.hdr
}

// headerProblems lists how a final response departs from RFC 3261 8.2.6.2
// (Via, From, Call-ID, CSeq copied; To copied, one tag, the request's tag
// kept) and 18.2.1 (received= when the sent-by host is not the source IP).
func headerProblems(m []byte, resp *received, source string) []string {
	var out []string
	req := requestHeaders(m)
	for _, h := range []string{"via", "from", "call-id", "cseq", "to"} {
		if len(req[h]) > 0 && len(resp.hdr[h]) == 0 {
			out = append(out, "no "+h+" (the request has one)")
		}
	}
	if vs := req["via"]; len(vs) > 0 && len(resp.hdr["via"]) > 0 {
		top, _, _ := strings.Cut(vs[0], ",")
		f := strings.Fields(strings.SplitN(top, ";", 2)[0])
		host := ""
		if len(f) > 0 {
			host = f[len(f)-1]
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
		}
		if strings.Trim(host, "[]") != source && !strings.Contains(resp.hdr["via"][0], "received=") {
			out = append(out, fmt.Sprintf("top Via has no received= (sent-by %q is not the source %s)", host, source))
		}
	}
	tagOf := func(v string) (string, int) {
		n := strings.Count(strings.ToLower(strings.ReplaceAll(v, " ", "")), ";tag=")
		i := strings.Index(strings.ToLower(strings.ReplaceAll(v, " ", "")), ";tag=")
		if i < 0 {
			return "", 0
		}
		t := strings.ReplaceAll(v, " ", "")[i+5:]
		t, _, _ = strings.Cut(t, ";")
		return strings.Trim(t, "\""), n
	}
	if len(req["to"]) == 1 && len(resp.hdr["to"]) > 0 {
		rt, _ := tagOf(req["to"][0])
		st, n := tagOf(resp.hdr["to"][0])
		if n > 1 {
			out = append(out, fmt.Sprintf("To has %d tag parameters: %s", n, resp.hdr["to"][0]))
		}
		if rt != "" && st != rt {
			out = append(out, fmt.Sprintf("request To tag %q not kept (response: %s)", rt, resp.hdr["to"][0]))
		}
		if rt == "" && st == "" && resp.status > 100 {
			out = append(out, "no To tag in a final response")
		}
	}
	return out
}
