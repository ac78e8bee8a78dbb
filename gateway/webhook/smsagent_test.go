package webhook

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/routing"
)

// sms_agent_id: a number's messages go to another agent of its workspace
// than its calls; an id outside the workspace keeps the assigned agent.
func TestSMSAgent(t *testing.T) {
	for _, tc := range []struct {
		smsAgent, wantAgent, wantPath string
	}{
		{"texter", "texter", "/sms"},
		{"xo", "a1", "/inbound"}, // an agent of another workspace: ignored
	} {
		rg := newRig(t)
		msgs := subscribe(t, rg.nc, "callgate.messages.>")
		base := buildTestSnapshot(rg.agent.srv.URL + "/inbound")
		b := routing.NewBuilder()
		base.Agents(func(a *routing.Agent) { b.AddAgent(*a) })
		b.AddAgent(routing.Agent{ID: "texter", Workspace: "w1", MessagingURL: rg.agent.srv.URL + "/sms"})
		b.AddAgent(routing.Agent{ID: "xo", Workspace: "w2", MessagingURL: rg.agent.srv.URL + "/foreign"})
		b.AddIntegration(routing.Integration{ID: "int-tw", Workspace: "w1", Carrier: "twilio", AccountID: "AC123", AuthToken: testToken})
		r, _ := base.Lookup(numMain)
		n := r.Number
		n.Control = &routing.NumberControl{SMSAgentID: tc.smsAgent}
		b.AddNumber(n)
		rg.table.Store(b.Build())

		p := url.Values{"MessageSid": {"SM5"}, "From": {"+14155550100"}, "To": {numMain}, "Body": {"hi"}}
		if w := rg.do(twilioRequest(PathTwilioSMS, p, testToken)); w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		var got Message
		if err := json.Unmarshal(recv(t, msgs).Data, &got); err != nil {
			t.Fatal(err)
		}
		if got.Agent != tc.wantAgent {
			t.Errorf("sms_agent_id %s: published agent %q, want %q", tc.smsAgent, got.Agent, tc.wantAgent)
		}
		if d := rg.agent.next(t); d.Path != tc.wantPath {
			t.Errorf("sms_agent_id %s: delivered to %s, want %s", tc.smsAgent, d.Path, tc.wantPath)
		}
		rg.agent.none(t, 100*time.Millisecond)
	}
}

// Weighted agents on the voice webhook: the CallSid picks the agent, so
// the same call always lands on the same agent (failover attempts too).
func TestTwilioVoiceWeightedAgents(t *testing.T) {
	rg := newRig(t)
	base := buildTestSnapshot(rg.agent.srv.URL + "/inbound")
	b := routing.NewBuilder()
	base.Agents(func(a *routing.Agent) { b.AddAgent(*a) })
	b.AddAgent(routing.Agent{ID: "hb", Workspace: "w1", Endpoints: []routing.Endpoint{{Region: "us-east", URI: "sip:hb@127.0.0.1:5094"}}})
	b.AddIntegration(routing.Integration{ID: "int-tw", Workspace: "w1", Carrier: "twilio", AccountID: "AC123", AuthToken: testToken})
	r, _ := base.Lookup(numMain)
	n := r.Number
	n.Control = &routing.NumberControl{Agents: []routing.AgentWeight{{AgentID: "a1", Weight: 1}, {AgentID: "hb", Weight: 1}}}
	b.AddNumber(n)
	rg.table.Store(b.Build())

	agentOfTwiML := func(sid string) string {
		p := voiceParams(numMain)
		p.Set("CallSid", sid)
		body := rg.do(twilioRequest(PathTwilioVoice, p, testToken)).Body.String()
		switch {
		case strings.Contains(body, "X-Callgate-Agent=hb"):
			return "hb"
		case strings.Contains(body, "X-Callgate-Agent=a1"):
			return "a1"
		}
		t.Fatalf("TwiML without an agent: %s", body)
		return ""
	}
	count := map[string]int{}
	for i := 0; i < 200; i++ {
		sid := "CA" + strconv.Itoa(1000+i)
		a := agentOfTwiML(sid)
		count[a]++
		if again := agentOfTwiML(sid); again != a {
			t.Fatalf("CallSid %s went to %s, then %s", sid, a, again)
		}
	}
	if count["hb"] < 70 || count["a1"] < 70 {
		t.Errorf("1:1 split over 200 calls: %v", count)
	}
}
