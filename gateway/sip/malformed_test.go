package sip

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// alive checks the edge still answers OPTIONS. Its Call-ID is new each
// time, so that a late answer to an earlier check does not count.
func alive(t *testing.T, raw *rawUA) {
	t.Helper()
	id := aliveCallID()
	raw.send(aliveOptions(raw, id))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m := raw.read(time.Until(deadline))
		if strings.HasPrefix(m, "SIP/2.0 200") && msgCallID(m) == id {
			return
		}
	}
	t.Fatal("edge no longer answers OPTIONS")
}

var aliveSeq atomic.Int64

func aliveCallID() string { return "alive-" + itoa(int(aliveSeq.Add(1))) }

func aliveOptions(raw *rawUA, id string) string {
	return "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:" + itoa(raw.port()) + ";branch=z9hG4bK-" + id + "\r\n" +
		"From: <sip:carrier@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: " + id + "\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
}

// msgCallID is the Call-ID of a SIP message ("" when it has none).
func msgCallID(m string) string {
	head, _, _ := strings.Cut(m, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n") {
		name, v, ok := strings.Cut(l, ":")
		if ok && (strings.EqualFold(strings.TrimSpace(name), "Call-ID") || strings.TrimSpace(name) == "i") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestMalformedMessages(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), nil, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	good := raw.invite(e, numPurchased, "mal", "")
	noHeader := func(name string) string {
		var out []string
		for _, l := range strings.Split(good, "\r\n") {
			if !strings.HasPrefix(l, name+":") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\r\n")
	}
	huge := strings.Replace(good, "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nX-Huge: "+strings.Repeat("a", 20000)+"\r\n", 1)
	tooBig := strings.Replace(good, "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nX-Huge: "+strings.Repeat("a", 70000)+"\r\n", 1)
	manyHeaders := strings.Replace(good, "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n"+strings.Repeat("X-A: b\r\n", 3000), 1)
	for _, tc := range []struct {
		name string
		msg  string
		want string // "" = dropped (no response)
	}{
		{"truncated-headers", good[:200], "SIP/2.0 400"},
		{"truncated-start-line", "INVITE sip:+1228", ""},
		{"content-length-too-large", strings.Replace(good, "Content-Length: ", "Content-Length: 9", 1), "SIP/2.0 400"},
		{"content-length-not-a-number", strings.Replace(good, "Content-Length: ", "Content-Length: x", 1), "SIP/2.0 400"},
		{"missing-call-id", noHeader("Call-ID"), "SIP/2.0 400"},
		{"missing-cseq", noHeader("CSeq"), "SIP/2.0 400"},
		{"missing-from", noHeader("From"), "SIP/2.0 400"},
		{"missing-via", noHeader("Via"), ""},
		{"cseq-method-mismatch", strings.Replace(good, "CSeq: 1 INVITE", "CSeq: 1 BYE", 1), "SIP/2.0 400"},
		{"bad-version", strings.Replace(good, "SIP/2.0\r\n", "SIP/7.0\r\n", 1), "SIP/2.0 505"},
		{"garbage", "\x00\xff\xfe garbage \x01\x02\r\n\r\n", ""},
		{"crlf-keepalive", "\r\n\r\n", ""},
		{"binary-noise", strings.Repeat("\xde\xad\xbe\xef", 300), ""},
		{"huge-header", huge, "SIP/2.0 200"},
		{"too-big", tooBig, ""},
		{"many-headers", manyHeaders, "SIP/2.0 200"},
		{"response-garbage", "SIP/2.0 999999999999 Nope\r\nVia: x\r\n\r\n", ""},
		{"stray-response", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "mal-" + tc.name
			tc.msg = strings.ReplaceAll(tc.msg, "mal", id)
			if len(tc.msg) > 65000 {
				// too big for one datagram on purpose: the kernel may refuse it
				_, _ = raw.conn.WriteToUDP([]byte(tc.msg), raw.to)
			} else {
				raw.send(tc.msg)
			}
			// A final response to this message carries its Call-ID, or none
			// when the message had none; responses with another Call-ID
			// are late ones to earlier subtests (a forwarded call's 200 is
			// retransmitted until ACKed) and do not count.
			ours := func(m string) bool {
				if m == "" || strings.HasPrefix(m, "SIP/2.0 1") {
					return false
				}
				c := msgCallID(m)
				return c == id || c == ""
			}
			if tc.want != "" {
				deadline := time.Now().Add(10 * time.Second)
				for {
					m := raw.read(time.Until(deadline))
					if m == "" {
						t.Fatalf("no response after 10 s, want %s", tc.want)
					}
					if !ours(m) {
						continue
					}
					if !strings.HasPrefix(m, tc.want) {
						t.Errorf("got %q, want %s", statusLine(m), tc.want)
					}
					break
				}
				alive(t, raw)
				return
			}
			// No response expected: the edge answers an OPTIONS sent after
			// the message; nothing of ours may come before that answer (nor
			// shortly after it: the two are handled concurrently).
			probe := aliveCallID()
			raw.send(aliveOptions(raw, probe))
			deadline := time.Now().Add(10 * time.Second)
			answered := false
			for {
				wait := time.Until(deadline)
				if answered {
					wait = min(wait, 200*time.Millisecond)
				}
				m := raw.read(wait)
				if m == "" {
					break
				}
				if ours(m) {
					t.Errorf("got %q, want no response", statusLine(m))
				}
				if strings.HasPrefix(m, "SIP/2.0 200") && msgCallID(m) == probe && !answered {
					answered = true
					deadline = time.Now().Add(200 * time.Millisecond)
				}
			}
			if !answered {
				t.Fatal("edge no longer answers OPTIONS")
			}
		})
	}
}
