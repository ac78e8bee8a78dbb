package console_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCallsPageBrowser: in a real browser, the calls placed through the
// SIP edge are listed with their outcome (another workspace's are not);
// a call held up shows as 1 call in progress, updated in place by htmx,
// and 0 after the hang-up; the detail page opens from the list; the
// forwarded call marks its business line as tested. Every action is
// reachable with Tab and no page logs a console error.
func TestCallsPageBrowser(t *testing.T) {
	f := newCallsFixture(t)
	b := startBrowser(t, f.base, 1280, 900)
	login(b, f.n.APIKey())
	b.clickAndLoad(`a[href="/console/calls"]`)
	if b.path() != "/console/calls" {
		t.Fatalf("the Calls link leads to %s", b.path())
	}
	want, _ := json.Marshal(map[string]string{f.answered: "answered", f.busy: "busy", f.forwarded: "answered"})
	for i := 0; ; i++ {
		var got map[string]string
		b.eval(`Object.fromEntries(Array.from(document.querySelectorAll("#calls tr.call")).map(function(r){ return [r.dataset.callId, r.dataset.outcome]; }))`, &got)
		if len(got) == 3 && got[f.answered] == "answered" && got[f.busy] == "busy" && got[f.forwarded] == "answered" {
			break
		}
		if i == 200 {
			t.Fatalf("calls listed %v, want %s", got, want)
		}
		b.open("/console/calls") // the history is written asynchronously: reload until it is there
	}
	if txt := b.text("#calls"); strings.Contains(txt, f.otherCall) || !strings.Contains(txt, "Busy") || !strings.Contains(txt, "486") {
		t.Fatalf("calls table: %q", txt)
	}
	if missing := b.unreachable(); len(missing) > 0 {
		t.Errorf("calls page: not reachable with Tab: %v", missing)
	}
	b.noErrors("calls page")

	// Live count, in place: one call up, then none.
	b.open("/console/calls")
	var ok bool
	b.eval(`window.__cg_stay = true`, &ok)
	hangup := f.carrier.dial(t, f.n.SIP().UDPAddr(), f.numOK)
	b.waitFor("1 call in progress", `document.querySelector("#active-calls").textContent.trim() === "1"`)
	hangup()
	b.waitFor("0 calls in progress", `document.querySelector("#active-calls").textContent.trim() === "0"`)
	b.eval(`window.__cg_stay === true`, &ok)
	if !ok {
		t.Fatal("the live count was updated by reloading the page, not in place")
	}
	if txt := b.text("#region-us-east"); !strings.Contains(txt, "us-east") || !strings.Contains(txt, " ms") {
		t.Fatalf("region health: %q", txt)
	}

	// The busy call's detail, from the list (filtered by outcome).
	b.open("/console/calls?outcome=busy")
	b.clickAndLoad(`#calls tr.call a`)
	if txt := b.text("#call-status"); txt != "486" {
		t.Fatalf("detail SIP status %q", txt)
	}
	if txt := b.text("#call-outcome"); txt != "Busy" {
		t.Fatalf("detail outcome %q", txt)
	}
	if missing := b.unreachable(); len(missing) > 0 {
		t.Errorf("call page: not reachable with Tab: %v", missing)
	}
	b.noErrors("call page")

	// Forwarding: the line the forwarded call came through is tested.
	b.clickAndLoad(`a[href="/console/forwarding"]`)
	var rows map[string]string
	b.eval(`Object.fromEntries(Array.from(document.querySelectorAll("#lines tbody tr")).map(function(r){ return [r.cells[0].textContent, r.querySelector(".line-test").textContent]; }))`, &rows)
	if !strings.Contains(rows[fwdLine], "last forwarded call") || !strings.Contains(rows[untestedLine], "not yet tested: call your business line") {
		t.Fatalf("forwarding test status: %v", rows)
	}
	b.noErrors("forwarding")
}
