package console_test

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/console"
	"github.com/callgate/callgate/internal/testwait"
)

var callRow = regexp.MustCompile(`<tr class="call" data-outcome="([a-z_]+)" data-call-id="([^"]+)">`)

// rows is the Calls page's calls: id → outcome, in page order.
func callRows(body string) (ids []string, outcome map[string]string) {
	outcome = map[string]string{}
	for _, m := range callRow.FindAllStringSubmatch(body, -1) {
		id := html.UnescapeString(m[2])
		ids = append(ids, id)
		outcome[id] = m[1]
	}
	return ids, outcome
}

// TestCallsPageHTTP: real SIP calls through the node's SIP edge appear on
// the Calls page, without JavaScript, with their outcome (answered, busy);
// filters and the history's cursor page through them; a call's detail
// page shows its SIP status; another workspace's call is neither listed
// nor readable by id (404); the live part counts the workspace's calls in
// progress and its endpoints' health per region only; the forwarded call
// marks its business line as tested, the other line is "not yet tested".
func TestCallsPageHTTP(t *testing.T) {
	defer console.SetCallsPageSize(2)()
	f := newCallsFixture(t)
	c := newClient(t, f.base)
	c.mustLogin(f.n.APIKey())

	var ids []string
	var outcome map[string]string
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		r, body := c.do("GET", "/console/calls", nil)
		if r.StatusCode != 200 {
			return fmt.Errorf("calls page: %d", r.StatusCode)
		}
		ids, outcome = callRows(body)
		if len(ids) != 2 || outcome[f.forwarded] != "answered" || outcome[f.busy] != "busy" {
			return fmt.Errorf("first page: %v", outcome)
		}
		return nil
	})
	// Page 2 through the "Older" link: the first, answered call, and no more.
	_, body := c.do("GET", "/console/calls", nil)
	m := regexp.MustCompile(`href="(/console/calls\?[^"]*cursor=[^"]+)" id="older"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no Older link on a full first page:\n%s", body)
	}
	r, body := c.do("GET", html.UnescapeString(m[1]), nil)
	ids2, out2 := callRows(body)
	if r.StatusCode != 200 || len(ids2) != 1 || out2[f.answered] != "answered" || strings.Contains(body, `id="older"`) {
		t.Fatalf("second page: %d %v", r.StatusCode, out2)
	}
	for _, id := range append(ids, ids2...) {
		if id == f.otherCall {
			t.Fatal("workspace other's call is listed")
		}
	}
	// Filters, checked as the API checks them.
	_, body = c.do("GET", "/console/calls?outcome=busy", nil)
	if ids, _ := callRows(body); len(ids) != 1 || ids[0] != f.busy {
		t.Fatalf("outcome=busy lists %v", ids)
	}
	_, body = c.do("GET", "/console/calls?number="+url.QueryEscape(f.numBusy)+"&direction=inbound", nil)
	if ids, _ := callRows(body); len(ids) != 1 || ids[0] != f.busy {
		t.Fatalf("number filter lists %v", ids)
	}
	_, body = c.do("GET", "/console/calls?agent=busy", nil)
	if ids, _ := callRows(body); len(ids) != 1 || ids[0] != f.busy {
		t.Fatalf("agent filter lists %v", ids)
	}
	for q, field := range map[string]string{"direction=sideways": "direction-error", "outcome=great": "outcome-error",
		"number=abc": "number-error", "agent=" + url.QueryEscape("../x"): "agent-error"} {
		if r, body := c.do("GET", "/console/calls?"+q, nil); r.StatusCode != 400 || !strings.Contains(body, `id="`+field+`"`) {
			t.Errorf("?%s: %d, want 400 naming the field", q, r.StatusCode)
		}
	}
	if r, body := c.do("GET", "/console/calls?cursor=bogus", nil); r.StatusCode != 400 || !strings.Contains(body, "cursor") {
		t.Errorf("bad cursor: %d", r.StatusCode)
	}

	// A call's detail; another workspace's id is 404.
	r, body = c.do("GET", "/console/calls/"+url.PathEscape(f.busy), nil)
	if r.StatusCode != 200 || !strings.Contains(body, `id="call-status">486<`) || !strings.Contains(body, ">Busy<") {
		t.Fatalf("busy call detail: %d\n%s", r.StatusCode, body)
	}
	r, body = c.do("GET", "/console/calls/"+url.PathEscape(f.forwarded), nil)
	body = html.UnescapeString(body)
	if r.StatusCode != 200 || !strings.Contains(body, `id="call-forwarded">`+fwdLine+`<`) || !strings.Contains(body, `id="call-status">200<`) {
		t.Fatalf("forwarded call detail: %d\n%s", r.StatusCode, body)
	}
	if r, body := c.do("GET", "/console/calls/"+url.PathEscape(f.otherCall), nil); r.StatusCode != 404 || strings.Contains(body, f.otherCall) {
		t.Fatalf("another workspace's call by id: %d", r.StatusCode)
	}

	// The live part (htmx): no call in progress; both of this workspace's
	// endpoints up in us-east, workspace other's endpoint not counted.
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		req, _ := http.NewRequest("GET", f.base+"/console/calls?part=live", nil)
		req.Header.Set("HX-Request", "true")
		u, _ := url.Parse(f.base + "/console/")
		for _, ck := range c.hc.Jar.Cookies(u) {
			req.AddCookie(ck)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		s := string(raw)
		if !strings.HasPrefix(strings.TrimSpace(s), `<div id="live-inner"`) || !strings.Contains(s, `id="active-calls">0<`) ||
			!regexp.MustCompile(`id="region-us-east"><td>us-east</td><td class="num">2</td><td class="num">0</td>`).MatchString(s) {
			return fmt.Errorf("live part: %s", s)
		}
		return nil
	})

	// Forwarding: the line the forwarded call came through is tested.
	_, body = c.do("GET", "/console/forwarding", nil)
	body = html.UnescapeString(body)
	rows := regexp.MustCompile(`(?s)<tr><td>(\+\d+)</td>.*?</tr>`).FindAllStringSubmatch(body, -1)
	status := map[string]string{}
	for _, r := range rows {
		status[r[1]] = r[0]
	}
	if !strings.Contains(status[fwdLine], "tested</span> last forwarded call") || !strings.Contains(status[fwdLine], url.PathEscape(f.forwarded)) {
		t.Errorf("forwarded line: %q", status[fwdLine])
	}
	if !strings.Contains(status[untestedLine], "not yet tested") {
		t.Errorf("untested line: %q", status[untestedLine])
	}
}
