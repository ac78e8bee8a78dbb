package callhistory_test

import (
	"context"
	"testing"
	"time"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
)

// A relayed call's history says, per leg, whether the relay terminated
// SRTP (the suite) and how many packets it dropped as forged or replayed.
func TestHistoryKeepsPerLegSRTP(t *testing.T) {
	st, rec, m := recorder(t)
	n := answeredCall(rec, "acme", "srtp-call", t0)
	stats := &media.CallStats{CallID: "srtp-call",
		Caller: media.LegStats{Packets: 10, SRTP: "AES_CM_128_HMAC_SHA1_80", SRTPAuthFailures: 4, SRTPReplays: 1},
		Agent:  media.LegStats{Packets: 10}}
	rec.Publish(calls.Event{Kind: calls.Ended, CallID: "srtp-call", Time: t0, Workspace: "acme", Status: 200, Duration: time.Second, Media: stats})
	waitStored(t, m, n+1)
	c, err := callhistory.NewReader(st, nil).Get(context.Background(), "acme", "srtp-call")
	if err != nil {
		t.Fatal(err)
	}
	if c.Media == nil || c.Media.Caller.SRTP != "AES_CM_128_HMAC_SHA1_80" || c.Media.Caller.SRTPAuthFailures != 4 ||
		c.Media.Caller.SRTPReplays != 1 || c.Media.Agent.SRTP != "" {
		t.Fatalf("media figures: %+v", c.Media)
	}
}
