package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node/nodetest"
)

// TestOutboundCallCutWhenCreditsRunOut: an agent (sipgo UA, digest on the
// agent listener of a real node) calls a US number from its workspace's
// sandbox number; the call leaves through the sandbox termination to a
// sipgo "PSTN" and is answered. The workspace can pay one minute (usage
// price 500 a minute), not two: when the node's clock reaches the second
// minute the call is ended with BYE to both sides, its history says
// credits_exhausted, and GET /v1/credits lists exactly one usage charge of
// one minute. A second call then gets 402 (the balance cannot pay the
// first minute) and reaches nobody.
func TestOutboundCallCutWhenCreditsRunOut(t *testing.T) {
	const price = 500
	var skew atomic.Int64 // added to the node's clock
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }

	pstn, agent := newUA(t), newUA(t)
	cfg := testConfig(t)
	cfg.SIP.Agents.Addr = "127.0.0.1:0"
	cfg.Carriers.Sandbox.TerminationURI = fmt.Sprintf("sip:pstn@127.0.0.1:%d;transport=udp", pstn.port)
	cfg.Usage.Prices = map[string]int64{"default": price}
	logs := &logBuffer{}
	n := nodetest.Start(t, nodetest.Base(cfg), nodetest.Log(logs), nodetest.Clock(now))
	c := apiClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}

	c.must(201, "POST", "/v1/agents", `{"id":"bot","name":"bot","endpoints":[{"region":"us-east","uri":"`+agent.uri()+`"}]}`)
	num, _ := buy(t, c, "228", "bot")
	balance := c.must(200, "GET", "/v1/credits", "")["balance"].(float64)
	if balance < price || balance >= 2*price {
		t.Fatalf("balance %v after the purchase: the test needs one minute (%d) payable, not two", balance, price)
	}
	cred := c.must(201, "POST", "/v1/agents/bot/sip-credentials", "")
	user, pass := cred["username"].(string), cred["password"].(string)
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if _, ok := n.Table().Load().Credential(user); !ok {
			return errors.New("the credential is not in the routing table yet")
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	gw := n.SIP().AgentUDPAddr()
	dial := func() (*sipgo.DialogClientSession, *sip.Response, error) {
		target := sip.Uri{Scheme: "sip", User: "+14155550123", Host: gw.Addr().String(), Port: int(gw.Port())}
		ds, err := agent.dcc.Invite(ctx, target, []byte(testSDP), sip.NewHeader("Content-Type", "application/sdp"),
			sip.NewHeader("P-Asserted-Identity", "<sip:"+num+"@127.0.0.1>"))
		if err != nil {
			return nil, nil, err
		}
		if err := ds.WaitAnswer(ctx, sipgo.AnswerOptions{Username: user, Password: pass}); err != nil {
			var de *sipgo.ErrDialogResponse
			if errors.As(err, &de) {
				return nil, de.Res, nil
			}
			return nil, nil, err
		}
		return ds, ds.InviteResponse, ds.Ack(ctx)
	}
	ds, res, err := dial()
	if err != nil || ds == nil {
		t.Fatalf("outbound call: %v %v\n%s", res, err, logs.String())
	}
	if inv, _ := pstn.counts(); inv != 1 {
		t.Fatalf("the PSTN got %d INVITEs, want 1", inv)
	}
	if _, byes := agent.counts(); byes != 0 {
		t.Fatalf("the agent got a BYE before the balance ran out")
	}

	// A minute later (by the node's clock) the second minute cannot be paid.
	skew.Store(int64(time.Minute))
	testwait.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		_, pb := pstn.counts()
		_, ab := agent.counts()
		if pb != 1 || ab != 1 {
			return fmt.Errorf("BYEs: PSTN %d, agent %d; want 1 each", pb, ab)
		}
		return nil
	})

	// History: the call ended with credits_exhausted.
	var rec map[string]any
	testwait.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		for _, x := range c.must(200, "GET", "/v1/calls", "")["calls"].([]any) {
			if m := x.(map[string]any); m["direction"] == "outbound" && m["ended_at"] != nil {
				rec = m
				return nil
			}
		}
		return errors.New("no ended outbound call in GET /v1/calls")
	})
	if rec["end_reason"] != "credits_exhausted" || rec["to"] != "+14155550123" || rec["from"] != num {
		t.Errorf("history record %v: want end_reason credits_exhausted, from %s to +14155550123", rec, num)
	}

	// Exactly one usage charge: one started minute at the price (the call
	// lasted well under a minute of real time).
	var usage []map[string]any
	testwait.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		usage = nil
		for _, x := range c.must(200, "GET", "/v1/credits", "")["entries"].([]any) {
			if m := x.(map[string]any); m["kind"] == "usage" {
				usage = append(usage, m)
			}
		}
		if len(usage) == 0 {
			return errors.New("no usage entry yet")
		}
		return nil
	})
	if len(usage) != 1 || usage[0]["amount"].(float64) != -price {
		t.Fatalf("usage entries %v: want exactly one of -%d", usage, price)
	}
	if got := c.must(200, "GET", "/v1/credits", "")["balance"].(float64); got != balance-price {
		t.Errorf("balance %v, want %v", got, balance-price)
	}

	// The rest cannot pay a first minute: 402, nothing reaches the PSTN.
	ds, res, err = dial()
	if err != nil || ds != nil || res == nil || res.StatusCode != 402 {
		t.Fatalf("second call: %v %v, want 402", res, err)
	}
	if !strings.Contains(res.Reason, "Insufficient credits") {
		t.Errorf("402 reason %q", res.Reason)
	}
	if inv, _ := pstn.counts(); inv != 1 {
		t.Errorf("the PSTN got %d INVITEs, want 1 (the refused call left callgate)", inv)
	}
}
