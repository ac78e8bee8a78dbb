package sip

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// TestSIPpTransferREFER: SIPp plays the caller's carrier and the agent;
// the agent transfers the caller with REFER inside the dialog.
//   - the carrier honours REFER: the REFER reaches it with the number as
//     tel:+E.164 (the agent named sip:+E.164@host;user=phone), its 202 and
//     NOTIFYs (sipfrag 100, 200) reach the agent, and the transfer's
//     events go trying → completed; the call's ended event carries it;
//   - the carrier answers 501 and callgate has no termination to bridge
//     through (the number's carrier has none here): the agent gets the
//     501 and keeps the caller (its INFO reaches the caller, the
//     caller's BYE reaches the agent); the outcome is failed with status
//     501;
//   - a premium-rate target: callgate answers 403 itself (the carrier
//     never sees the REFER), the caller stays with the agent; refused.
func TestSIPpTransferREFER(t *testing.T) {
	if _, err := os.Stat(sippBin); err != nil {
		t.Skip("sipp not installed (Debian sip-tester)")
	}
	if testing.Short() {
		t.Skip("runs SIPp")
	}
	cases := []struct {
		name, carrier, agent, referTo string
		want                          string // final transfer state
		status                        int
	}{
		{"carrier accepts", "uac_refer_accept.xml", "uas_refer_accept.xml", "sip:+14155550143@pstn.example.com;user=phone", calls.TransferCompleted, 200},
		{"carrier refuses 501", "uac_refer_refuse.xml", "uas_refer_refused.xml", "tel:+14155550143", calls.TransferFailed, 501},
		{"premium refused by policy", "uac_refer_refuse.xml", "uas_refer_refused.xml", "tel:+19005550100", calls.TransferRefused, 403},
	}
	scen, _ := filepath.Abs("testdata/sipp")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// SIPp binds its port right after it is picked; the edge's
			// own ports come after (no free port taken meanwhile)
			uasPort := freeUDPPort(t)
			uas, uasOut := startSIPp(t, dir, 30, "-sf", filepath.Join(scen, tc.agent), "-i", "127.0.0.1",
				"-p", strconv.Itoa(uasPort), "-m", "1", "-nostdin", "-trace_err", "-key", "refer_to", tc.referTo)
			waitBound(t, "udp", uasPort)
			table := buildTable(routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(uasPort)})
			e := runEdge(t, table, nil, nil)
			uac, uacOut := startSIPp(t, dir, 30, "-sf", filepath.Join(scen, tc.carrier), "-i", "127.0.0.1",
				"-s", numPurchased, "127.0.0.1:"+strconv.Itoa(int(e.UDPAddr().Port())), "-m", "1", "-nostdin", "-trace_err")
			if err := uac.Wait(); err != nil {
				t.Fatalf("sipp carrier: %v\n%s\nagent:\n%s\n%s", err, tail(uacOut.String()), tail(uasOut.String()), sippErrors(dir))
			}
			if err := uas.Wait(); err != nil {
				t.Fatalf("sipp agent: %v\n%s\n%s", err, tail(uasOut.String()), sippErrors(dir))
			}
			ended := e.events.waitEvent(t, calls.Ended, "")
			if ended.Status != 200 || ended.Reason != "bye_caller" {
				t.Errorf("ended %d %s, want 200 bye_caller (the caller stayed in the call until its BYE)", ended.Status, ended.Reason)
			}
			var states []string
			e.events.mu.Lock()
			for _, ev := range e.events.events {
				if ev.Kind == calls.TransferKind && ev.Transfer != nil {
					states = append(states, ev.Transfer.State)
					if ev.Workspace != "w" || ev.CallID != ended.CallID || ev.Transfer.Via != "sip_refer" || ev.Transfer.Mode != "refer" {
						t.Errorf("transfer event %+v %+v", ev, *ev.Transfer)
					}
				}
			}
			e.events.mu.Unlock()
			if len(states) == 0 || states[len(states)-1] != tc.want {
				t.Fatalf("transfer states %v, want … %s", states, tc.want)
			}
			if ended.Transfer == nil || ended.Transfer.State != tc.want || ended.Transfer.Status != tc.status {
				t.Errorf("ended event's transfer %+v, want %s %d", ended.Transfer, tc.want, tc.status)
			}
			if got := testutil.ToFloat64(e.xferMetrics.Transfers.WithLabelValues("sip_refer", tc.want)); got != 1 {
				t.Errorf("callgate_sip_transfers_total{via=sip_refer,outcome=%s} = %v, want 1", tc.want, got)
			}
			if tc.want == calls.TransferCompleted && (states[0] != calls.TransferTrying || ended.Transfer.To != "tel:+14155550143") {
				t.Errorf("states %v, to %q: want trying first, to tel:+14155550143", states, ended.Transfer.To)
			}
		})
	}
}
