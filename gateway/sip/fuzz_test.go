package sip

import (
	"net"
	"net/netip"
	"testing"

	"github.com/callgate/callgate/phone"
)

// FuzzMessage feeds arbitrary datagrams through the whole message path
// (parse, validate, dispatch, routing, replies) of a running edge. Any
// panic fails. Seeds: testdata/fuzz/FuzzMessage.
func FuzzMessage(f *testing.F) {
	agent := newUA(f, "127.0.0.1")
	e := runEdge(f, buildTable(agent.endpoint("eu")), nil, nil)
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sink.Close() })
	go func() { // drain replies
		buf := make([]byte, 65535)
		for {
			if _, _, err := sink.ReadFromUDP(buf); err != nil {
				return
			}
		}
	}()
	from := peer{Proto: protoUDP, Addr: netip.MustParseAddrPort(sink.LocalAddr().String())}
	raw := &rawUA{t: f, conn: sink, to: net.UDPAddrFromAddrPort(e.UDPAddr())}
	f.Add([]byte(raw.invite(e, numPurchased, "seed-1", "")))
	f.Add([]byte(raw.invite(e, "+19995550100", "seed-2", "Diversion: <sip:+14155550100@x>;reason=unconditional, <tel:+1415>\r\n")))
	f.Add([]byte(cancelFor(raw.invite(e, numPurchased, "seed-3", ""))))
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKcgx00\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>;tag=2\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("BYE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\nRoute: <sip:127.0.0.1;lr>\r\nCall-ID: a\r\nCSeq: 2 BYE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>;tag=2\r\nContent-Length: 0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e.handleDatagram(data, from)
	})
}

// FuzzHeaderNumbers fuzzes the Diversion/History-Info number extraction.
func FuzzHeaderNumbers(f *testing.F) {
	for _, s := range []string{
		`<sip:+14155550100@carrier.example>;reason=unconditional;counter=1`,
		`"Bob, Jr" <tel:+1-415-555-0100;phone-context=x>;reason=user-busy, <sip:4155550100@x;user=phone>`,
		`<sip:+14155550100@carrier.example?Reason=SIP%3Bcause%3D302>;index=1`,
		`sip:+14155550100@x`, `<`, `<>`, `,,,`, `"unterminated`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, p := range splitHeaderValues(v) {
			n := uriNumber(p)
			_, _ = phone.Parse(n, "US")
		}
	})
}
