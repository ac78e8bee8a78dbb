package api_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// optionsResponder is a SIP agent endpoint that answers OPTIONS probes
// (200) and nothing else; its URI is returned.
func optionsResponder(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ua, _ := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	srv, _ := sipgo.NewServer(ua)
	srv.OnOptions(func(r *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(r, 200, "OK", nil))
	})
	go func() { _ = srv.ServeUDP(pc) }()
	t.Cleanup(func() { _ = ua.Close(); pc.Close() })
	return "sip:caller@127.0.0.1:" + strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
}
