package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/devua"
	"github.com/callgate/callgate/internal/testwait"
)

// TestCLICallsDTMF: `calls dtmf` queues digits on a real relayed call
// (dev caller → node → dev agent); bad digits are a usage error before
// any request; an unknown call is the API's 404.
func TestCLICallsDTMF(t *testing.T) {
	n := startNode(t)
	if r := cg(t, n, "", "calls", "dtmf", "x@127.0.0.1", "12x"); r.code != exitUsage {
		t.Fatalf("bad digits: %s", r)
	}
	if r := cg(t, n, "", "calls", "dtmf", "nothing@127.0.0.1", "1"); r.code == 0 || !strings.Contains(r.errOut, "404") {
		t.Fatalf("unknown call: %s", r)
	}
	a, err := devua.StartAgent(devua.AgentConfig{Listen: "127.0.0.1:0", ToneHz: 440, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	r := cg(t, n, "", "numbers", "search", "--area-code", "229", "--limit", "1", "--json")
	var res struct {
		Numbers []struct {
			PhoneNumber string `json:"phone_number"`
		}
	}
	if err := json.Unmarshal([]byte(r.out), &res); err != nil || len(res.Numbers) != 1 {
		t.Fatalf("search: %v %s", err, r)
	}
	num := res.Numbers[0].PhoneNumber
	if r := cg(t, n, "", "agents", "create", "bot", "--endpoint", "local="+a.URI(), "--media", "relay"); r.code != 0 {
		t.Fatal(r)
	}
	if r := cg(t, n, "", "numbers", "buy", num, "--yes", "--agent", "bot"); r.code != 0 {
		t.Fatal(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // until one call is answered (routing and probes settle first)
		defer close(done)
		for ctx.Err() == nil {
			res, err := devua.Call(ctx, devua.CallConfig{Gateway: n.SIP().UDPAddr().String(), To: num, ToneHz: 440, Duration: 20 * time.Second})
			if err == nil && res.Status == 200 {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-done }()
	var id string
	testwait.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		r := cg(t, n, "", "calls", "list", "--number", num, "--json")
		var page struct {
			Calls []struct {
				ID         string  `json:"id"`
				AnsweredAt *string `json:"answered_at"`
				EndedAt    *string `json:"ended_at"`
			} `json:"calls"`
		}
		if err := json.Unmarshal([]byte(r.out), &page); err != nil {
			return fmt.Errorf("list: %v %s", err, r)
		}
		for _, c := range page.Calls {
			if c.AnsweredAt != nil && c.EndedAt == nil {
				id = c.ID
				return nil
			}
		}
		return errors.New("no answered call in progress yet")
	})
	r = cg(t, n, "", "calls", "dtmf", id, "12w#")
	if r.code != 0 || r.out != "queued 12w# (via rfc4733)\n" {
		t.Fatalf("dtmf: %s", r)
	}
}
