package webhook

import (
	"encoding/json"
	"net/url"
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
