package sip

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/callgate/callgate/routing"
)

// FuzzAgentAuth feeds arbitrary Proxy-Authorization values (and caller
// IDs) through an agent's INVITE on the agent listener: authentication,
// caller ID, destination and egress. Any panic fails, and no value that
// is not a response computed with the password authenticates.
// Seeds: testdata/fuzz/FuzzAgentAuth.
func FuzzAgentAuth(f *testing.F) {
	e := runAgentEdge(f, outTable{agentEP: routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:9"}}.build(),
		"sip:pstn@127.0.0.1:9", func(c *Config) { c.Agents.MaxAuthFailures = 1 << 30 }, nil)
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sink.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := sink.ReadFromUDP(buf); err != nil {
				return
			}
		}
	}()
	from := peer{Proto: protoUDP, Addr: netip.MustParseAddrPort(sink.LocalAddr().String()), Side: sideAgent}
	nonce := e.ag.nonce(time.Now())
	good, _ := digest.Digest(&digest.Challenge{Realm: "callgate", Nonce: nonce, Algorithm: "SHA-256", QOP: []string{"auth"}},
		digest.Options{Method: "INVITE", URI: "sip:" + destUS + "@127.0.0.1", Username: agentUser, Password: agentPass, Count: 1})
	f.Add(good.String(), numSandboxOut)
	f.Add(`Digest username="agent1", realm="callgate", nonce="0.x", uri="sip:a@b", response="00", qop=auth, nc=00000001, cnonce="c"`, numOtherWS)
	f.Add(`Digest username="agent1", realm="callgate", algorithm=MD5`, "12282001240")
	f.Add(`Basic YWdlbnQxOnMzY3JldA==`, "")
	n := 0
	f.Fuzz(func(t *testing.T, authz, caller string) {
		if strings.ContainsAny(authz+caller, "\r\n") {
			return
		}
		n++
		callID := "fuzz-" + strings.Repeat("x", n%7) + string(rune('a'+n%26))
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: destUS, Host: "127.0.0.1"})
		req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1",
			Port: int(from.Addr.Port()), Params: sip.HeaderParams{{K: "branch", V: "z9hG4bK-" + callID}}})
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: caller, Host: "127.0.0.1"},
			Params: sip.HeaderParams{{K: "tag", V: "f"}}})
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: destUS, Host: "127.0.0.1"}})
		cid := sip.CallIDHeader(callID)
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
		req.AppendHeader(sip.NewHeader("Proxy-Authorization", authz))
		snap := e.table.Load()
		cred, res := e.ag.verifyAgent(req, snap, time.Now())
		if res == authOK && authz != good.String() {
			cr, err := digest.ParseCredentials(authz)
			if err != nil || cr.Response != good.Response {
				t.Fatalf("authenticated %q as %+v", authz, cred)
			}
		}
		e.handleOutboundInvite(req, from)
	})
}
