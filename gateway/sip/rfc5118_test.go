package sip

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/conformance/rfc5118"
)

// TestRFC5118Torture sends every RFC 5118 (IPv6 torture) message to an
// edge listening on 127.0.0.1 and [::1]: over IPv6 from [::1]:5060 where
// the message is IPv6-addressed, over IPv4 from 127.0.0.2 otherwise (as
// expect.tsv says), and compares the answer with the one
// conformance/rfc5118/expect.tsv records for this edge. The Vias have no
// rport, so each answer goes to the source address on the Via's sent-by
// port (5060, 6050, 19823: RFC 3261 18.2.2), over the family it came in on.
func TestRFC5118Torture(t *testing.T) {
	needV6(t)
	exps, err := rfc5118.Load()
	if err != nil {
		t.Fatal(err)
	}
	v6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback, Port: 5060})
	if err != nil {
		t.Skip("cannot bind [::1]:5060:", err)
	}
	defer v6.Close()
	e := runEdge(t, buildTable(newUA(t, "127.0.0.1").endpoint("eu")), dualTweak(false), nil)
	raw6 := &rawUA{t: t, conn: v6, to: net.UDPAddrFromAddrPort(e.UDPAddr6())}
	raw4 := newRaw(t, "127.0.0.2", net_(e))
	readers := map[string]*rawUA{"6/5060": raw6}
	readerFor := func(ipv6 bool, port int) *rawUA {
		key, ip := "4/", net.IPv4(127, 0, 0, 2)
		if ipv6 {
			key, ip = "6/", net.IPv6loopback
		}
		key += strconv.Itoa(port)
		if r, ok := readers[key]; ok {
			return r
		}
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
		if err != nil {
			t.Skipf("cannot bind %s: %v", key, err)
		}
		t.Cleanup(func() { c.Close() })
		readers[key] = &rawUA{t: t, conn: c}
		return readers[key]
	}
	ok := 0
	for _, x := range exps {
		arch, err := rfc5118.Message(x.Name)
		if err != nil {
			t.Fatal(err)
		}
		msg := string(rfc5118.Wire(arch))
		port := viaPort(msg)
		if port == 0 {
			port = 5060
		}
		sender := raw4
		if x.IPv6 {
			sender = raw6
		}
		reader := readerFor(x.IPv6, port)
		sender.send(msg)
		got, warn := 0, ""
		if m := reader.readFinal(2 * time.Second); strings.HasPrefix(m, "SIP/2.0 ") && len(m) >= 11 {
			got, _ = strconv.Atoi(m[8:11])
			warn = first(m, "Warning")
			for _, n := range responseHeaderNotes(msg, m) {
				t.Errorf("%-30s %s: %s", x.Name, statusLine(m), n)
			}
		}
		if got == x.Answer {
			ok++
		} else {
			t.Errorf("%-30s %-4s got %d want %d %s (RFC: %s)", x.Name, x.Section, got, x.Answer, warn, x.Want)
		}
	}
	t.Logf("RFC 5118: %d of %d torture messages answered as intended", ok, len(exps))
	alive(t, raw4)
}
