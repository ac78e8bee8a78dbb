package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testwait"
)

func TestCLICalls(t *testing.T) {
	n := startNode(t)
	rec, err := callhistory.NewRecorder(n.Store().NC, n.Store(), callhistory.RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	rec.Publish(calls.Event{Kind: calls.Started, CallID: "cli-answered@10.0.0.1", Time: at, Workspace: "default", Number: "+12025550100", From: "+447700900123", To: "+12025550100", Agent: "bot"})
	rec.Publish(calls.Event{Kind: calls.Answered, CallID: "cli-answered@10.0.0.1", Time: at.Add(time.Second), Workspace: "default", Number: "+12025550100", Agent: "bot", SetupMillis: 950})
	rec.Publish(calls.Event{Kind: calls.Ended, CallID: "cli-answered@10.0.0.1", Time: at.Add(61 * time.Second), Workspace: "default", Number: "+12025550100", Agent: "bot", Status: 200, Reason: "bye_caller", Duration: time.Minute})
	rec.Publish(calls.Event{Kind: calls.Started, CallID: "cli-busy", Time: at.Add(time.Minute), Workspace: "default", Number: "+12025550100", From: "=1+2"})
	rec.Publish(calls.Event{Kind: calls.Ended, CallID: "cli-busy", Time: at.Add(time.Minute), Workspace: "default", Number: "+12025550100", Status: 486})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec.Close(ctx)
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		_, err := callhistory.NewReader(n.Store(), nil).Get(context.Background(), "default", "cli-busy")
		return err
	})

	r := cg(t, n, "", "calls", "list")
	if r.code != 0 || !strings.Contains(r.out, "cli-answered@10.0.0.1") || strings.Index(r.out, "cli-busy") > strings.Index(r.out, "cli-answered") {
		t.Fatalf("calls list (newest first):\n%s", r)
	}
	r = cg(t, n, "", "calls", "list", "--outcome", "busy", "--since", "2h", "--number", "+1 202 555 0100")
	if r.code != 0 || !strings.Contains(r.out, "cli-busy") || strings.Contains(r.out, "cli-answered") || !strings.Contains(r.out, "486") {
		t.Fatalf("calls list --outcome busy:\n%s", r)
	}
	r = cg(t, n, "", "calls", "list", "--limit", "1")
	if r.code != 0 || !strings.Contains(r.out, "more: --cursor ") {
		t.Fatalf("calls list --limit 1:\n%s", r)
	}
	cursor := strings.TrimSpace(r.out[strings.Index(r.out, "more: --cursor ")+len("more: --cursor "):])
	if r := cg(t, n, "", "calls", "list", "--limit", "1", "--cursor", cursor); r.code != 0 || !strings.Contains(r.out, "cli-answered") {
		t.Fatalf("second page:\n%s", r)
	}
	r = cg(t, n, "", "calls", "list", "--csv")
	if r.code != 0 || !strings.HasPrefix(r.out, "id,direction,from,to,") || !strings.Contains(r.out, "cli-busy,inbound,'=1+2,") {
		t.Fatalf("calls list --csv:\n%s", r)
	}
	r = cg(t, n, "", "calls", "show", "cli-answered@10.0.0.1")
	if r.code != 0 || !strings.Contains(r.out, "answered") || !strings.Contains(r.out, "bye_caller") || !strings.Contains(r.out, "950") {
		t.Fatalf("calls show:\n%s", r)
	}
	if r := cg(t, n, "", "calls", "show", "nope"); r.code == 0 || !strings.Contains(r.errOut, "no call") {
		t.Fatalf("calls show of an unknown call:\n%s", r)
	}
	if r := cg(t, n, "", "calls", "list", "--outcome", "great"); r.code == 0 || !strings.Contains(r.errOut, "outcome") {
		t.Fatalf("calls list --outcome great:\n%s", r)
	}
	if r := cg(t, n, "", "calls", "list", "--since", "last tuesday"); r.code == 0 || !strings.Contains(r.errOut, "--since") {
		t.Fatalf("calls list --since garbage:\n%s", r)
	}
	if r := cg(t, n, "", "calls", "list", "--workspace", "default"); r.code != 0 || !strings.Contains(r.out, "cli-busy") {
		t.Fatalf("admin: calls list --workspace default:\n%s", r)
	}
}
