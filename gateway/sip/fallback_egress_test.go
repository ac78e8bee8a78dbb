package sip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// fallbackNumberTable: numPurchased (sandbox, workspace w) is assigned to
// a1 at a1ep with the fallback chain [{number: human}].
func fallbackNumberTable(a1ep routing.Endpoint, human string) *routing.Table {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Endpoints: []routing.Endpoint{a1ep}})
	b.AddNumber(routing.Number{E164: numPurchased, Workspace: "w", Carrier: "sandbox", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1",
		Control: &routing.NumberControl{Fallback: []routing.FallbackStep{{Number: human}}}})
	b.AddWorkspace(routing.Workspace{ID: "w"})
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

// TestFallbackToPhoneLineThroughEgress: a fallback "number" step goes out
// through the real egress (the sandbox termination) to a phone line, from
// the carrier listener whether or not the agent listener is on; the
// answered event names step 1 and the termination; the caller's BYE
// reaches the phone line and its 200 comes back.
func TestFallbackToPhoneLineThroughEgress(t *testing.T) {
	const human = "+15551230000"
	for _, agents := range []bool{false, true} {
		for _, down := range []bool{false, true} {
			name := fmt.Sprintf("agent listener %v, agent down %v", agents, down)
			t.Run(name, func(t *testing.T) {
				var a1ep routing.Endpoint
				if down {
					dead := newRaw(t, "127.0.0.1", &netUDPAddrLoop) // never answers
					a1ep = routing.Endpoint{Region: "eu", URI: "sip:bot@127.0.0.1:" + itoa(dead.port())}
				} else {
					a1ep = newUA(t, "127.0.0.1", reject(503)).endpoint("eu")
				}
				line := newUA(t, "127.0.0.1") // the phone line behind the sandbox termination
				tweak := func(c *Config) {
					if !agents {
						c.Agents.Addr = ""
					}
				}
				e := runAgentEdge(t, fallbackNumberTable(a1ep, human), sandboxURI(line), tweak, nil)
				if agents != (e.AgentUDPAddr().IsValid() && e.AgentUDPAddr().Port() != 0) {
					t.Fatalf("agent listener %v, want %v", e.AgentUDPAddr(), agents)
				}
				carrierPort := int(e.UDPAddr().Port())
				carrier := newUA(t, "127.0.0.1")
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				ds := carrier.answered(ctx, t, e)

				inv := recv(t, line.invites, "INVITE at the phone line")
				if inv.Recipient.User != human || inv.Recipient.Port != line.port {
					t.Errorf("phone line Request-URI %s, want %s at port %d", inv.Recipient.String(), human, line.port)
				}
				if v := inv.Via(); v.Port != carrierPort {
					t.Errorf("INVITE reached the phone line from port %d, want the carrier listener %d", v.Port, carrierPort)
				}
				if got := rrPorts(inv.Headers()); len(got) == 0 || got[0] != carrierPort {
					t.Errorf("Record-Route ports at the phone line %v, want the carrier listener %d on top", got, carrierPort)
				} else if agents {
					for _, p := range got {
						if p == int(e.AgentUDPAddr().Port()) {
							t.Errorf("Record-Route at the phone line names the agent listener: %v", got)
						}
					}
				}
				recv(t, line.acks, "ACK at the phone line")
				callID := ds.InviteRequest.CallID().Value()
				ans := e.events.waitEvent(t, calls.Answered, callID)
				want := strings.Replace(sandboxURI(line), "sip:pstn@", "sip:"+human+"@", 1)
				if ans.FallbackStep != 1 || ans.Endpoint != want || ans.Direction != calls.Inbound {
					t.Errorf("answered %+v, want FallbackStep 1 and Endpoint %s", ans, want)
				}
				if err := ds.Bye(ctx); err != nil {
					t.Fatalf("caller's BYE: %v", err)
				}
				bye := recv(t, line.byes, "BYE at the phone line")
				if v := bye.Via(); v.Port != carrierPort {
					t.Errorf("BYE reached the phone line from port %d, want %d", v.Port, carrierPort)
				}
				if end := e.events.waitEvent(t, calls.Ended, callID); end.Reason != "bye_caller" || end.FallbackStep != 1 {
					t.Errorf("ended %+v", end)
				}

				// the phone line hangs up the next call: its BYE reaches
				// the caller, again from the carrier listener
				ds2 := carrier.answered(ctx, t, e)
				inv2 := recv(t, line.invites, "second INVITE at the phone line")
				recv(t, line.acks, "second ACK at the phone line")
				var sess *sipgo.DialogServerSession
				checkFor(t, 5*time.Second, func() error {
					if sess = line.session(inv2.CallID().Value()); sess == nil {
						return errors.New("no phone line dialog yet")
					}
					return nil
				})
				if err := sess.Bye(ctx); err != nil {
					t.Fatalf("phone line's BYE: %v", err)
				}
				bye2 := recv(t, carrier.byes, "BYE at the caller")
				if v := bye2.Via(); v.Port != carrierPort {
					t.Errorf("BYE reached the caller from port %d, want %d", v.Port, carrierPort)
				}
				if end := e.events.waitEvent(t, calls.Ended, ds2.InviteRequest.CallID().Value()); end.Reason != "bye_agent" {
					t.Errorf("second call ended %+v", end)
				}
			})
		}
	}
}

// TestFallbackLegCallerIdentity: on a fallback leg to a phone number the
// original caller stays in From; through Twilio or Telnyx (caller IDs
// checked) the gateway number is asserted (P-Asserted-Identity) and named
// as the diverting party (Diversion), replacing the caller's own; through
// the sandbox nothing is added. No X-Callgate-* header reaches the carrier.
func TestFallbackLegCallerIdentity(t *testing.T) {
	const human = "+15551230000"
	for _, carrierName := range []string{"sandbox", "twilio", "telnyx"} {
		t.Run(carrierName, func(t *testing.T) {
			a1 := newUA(t, "127.0.0.1", reject(503))
			line := newUA(t, "127.0.0.1")
			b := routing.NewBuilder()
			b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Endpoints: []routing.Endpoint{a1.endpoint("eu")}})
			n := routing.Number{E164: numPurchased, Workspace: "w", Carrier: carrierName, Origin: routing.OriginPurchased,
				Status: routing.StatusActive, AgentID: "a1",
				Control: &routing.NumberControl{Fallback: []routing.FallbackStep{{Number: human}}}}
			if carrierName != "sandbox" {
				n.Origin, n.IntegrationID = routing.OriginImported, "i1"
				b.AddIntegration(routing.Integration{ID: "i1", Workspace: "w", Carrier: carrierName,
					Termination: routing.Termination{URIs: []string{sandboxURI(line)}}})
			}
			b.AddNumber(n)
			b.AddWorkspace(routing.Workspace{ID: "w"})
			table := &routing.Table{}
			table.Store(b.Build())
			e := runAgentEdge(t, table, sandboxURI(line), nil, nil)
			carrier := newUA(t, "127.0.0.1")
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			ds, _, err := carrier.call(ctx, e, numPurchased,
				sip.NewHeader("P-Asserted-Identity", "<sip:+15550009999@evil.example>"),
				sip.NewHeader("Diversion", "<sip:+15550008888@evil.example>;reason=user-busy"))
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			_ = ds.Ack(ctx)
			inv := recv(t, line.invites, "INVITE at the phone line")
			if got, want := inv.From().Address.User, ds.InviteRequest.From().Address.User; got != want {
				t.Errorf("From user at the phone line %q, want the caller's %q", got, want)
			}
			for _, h := range inv.Headers() {
				if strings.HasPrefix(strings.ToLower(h.Name()), "x-callgate-") {
					t.Errorf("the carrier got %s: %s", h.Name(), h.Value())
				}
			}
			pai, div := inv.GetHeaders("P-Asserted-Identity"), inv.GetHeaders("Diversion")
			if carrierName == "sandbox" {
				if len(pai) != 1 || !strings.Contains(pai[0].Value(), "+15550009999") || len(div) != 1 {
					t.Errorf("sandbox leg: P-Asserted-Identity %v, Diversion %v; want the caller's, untouched", pai, div)
				}
			} else {
				want := "<sip:" + numPurchased + "@127.0.0.1>"
				if len(pai) != 1 || pai[0].Value() != want {
					t.Errorf("P-Asserted-Identity %v, want only %s", pai, want)
				}
				if len(div) != 1 || div[0].Value() != want+";reason=unconditional;counter=1" {
					t.Errorf("Diversion %v, want only %s;reason=unconditional;counter=1", div, want)
				}
			}
			if err := ds.Bye(ctx); err != nil {
				t.Fatalf("BYE: %v", err)
			}
		})
	}
}
