package placer

import "testing"

// BenchmarkCheck: the checks of one POST /v1/calls before anything is
// dialled (caller ID, agent, endpoint choice, destination policy).
func BenchmarkCheck(b *testing.B) {
	p := New(Config{}, Deps{Table: table("sandbox", "", "sip:bot@127.0.0.1:5999")})
	req := Request{From: "+12125550100", To: "+442079460123", AgentID: "bot"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.check(ws, req); err != nil {
			b.Fatal(err)
		}
	}
}
