package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/store/storetest"
)

func startNode(t *testing.T) *node.Node {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.SIP.Addr = "127.0.0.1:0"
	n, err := node.Start(context.Background(), cfg, node.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	storetest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !n.Ready() {
			return io.EOF
		}
		return nil
	})
	return n
}

func run(t *testing.T, n *node.Node, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	full := append([]string{"--api", "http://" + n.HTTPAddr(), "--data-dir", n.Config().DataDir}, args[1:]...)
	err := cli(args[0], full, strings.NewReader(stdin), &out)
	return out.String(), err
}

func TestCLIBuyFlow(t *testing.T) {
	n := startNode(t)
	out, err := run(t, n, "", "numbers", "search", "--area-code", "228", "--limit", "2", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Numbers []struct {
			PhoneNumber string `json:"phone_number"`
			MonthlyCost int64  `json:"monthly_cost"`
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Numbers) != 2 {
		t.Fatalf("search --json: %v %s", err, out)
	}
	num := res.Numbers[0].PhoneNumber
	table, err := run(t, n, "", "numbers", "search", "--area-code", "228", "--limit", "2")
	if err != nil || !strings.HasPrefix(table, "NUMBER") || !strings.Contains(table, num) || !strings.Contains(table, "Mississippi") {
		t.Fatalf("search table: %v\n%s", err, table)
	}
	// Declining the confirmation buys nothing; the prompt names the charge and no proration.
	out, err = run(t, n, "n\n", "numbers", "buy", num)
	if err != nil || !strings.Contains(out, "100 credits") || !strings.Contains(out, "no proration") || !strings.Contains(out, "not bought") {
		t.Fatalf("declined buy: %v\n%s", err, out)
	}
	if out, _ := run(t, n, "", "numbers", "list", "--json"); strings.Contains(out, num) {
		t.Fatal("declined buy bought the number")
	}
	if _, err := run(t, n, "y\n", "numbers", "buy", num); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, n, "", "agents", "create", "bot", "--endpoint", "us-east=sip:bot@127.0.0.1:5090"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, n, "", "numbers", "assign", num, "bot"); err != nil {
		t.Fatal(err)
	}
	list, err := run(t, n, "", "numbers", "list")
	if err != nil || !strings.Contains(list, num) || !strings.Contains(list, "bot") {
		t.Fatalf("list: %v\n%s", err, list)
	}
	credits, err := run(t, n, "", "credits")
	if err != nil || !strings.Contains(credits, "900 credits") || !strings.Contains(credits, "purchase") {
		t.Fatalf("credits: %v\n%s", err, credits)
	}
	// Errors from the API are shown with their detail.
	_, err = run(t, n, "", "numbers", "buy", num, "--yes")
	if err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("buying an owned number: %v", err)
	}
	if _, err := run(t, n, "", "agents", "delete", "bot"); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("delete agent with numbers: %v", err)
	}
	if _, err := run(t, n, "", "numbers", "release", num, "--yes"); err != nil {
		t.Fatal(err)
	}
}
