// Command server is the webhook benchmark's target: it builds a routing
// snapshot of N numbers, serves gateway/webhook's handler on one loopback
// port and a bare net/http handler (read the body, write a fixed TwiML
// document) on another, and writes signed Twilio voice requests for wrk.
//
// It prints nothing on stdout until both listeners are bound, then writes
// the address file (-addrs) that run.sh waits for.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/webhook"
	"github.com/callgate/callgate/routing"
)

const authToken = "benchtoken0123456789abcdef012345"

func main() {
	numbers := flag.Int("numbers", 100_000, "numbers in the routing snapshot")
	agents := flag.Int("agents", 1000, "agents (numbers are spread over them)")
	variants := flag.Int("variants", 1000, "distinct signed requests written for wrk")
	reqFile := flag.String("requests", "", "file to write the signed requests to (path\\tsignature\\tbody per line)")
	addrFile := flag.String("addrs", "", "file to write 'webhook=ADDR\\nbare=ADDR' to once listening")
	withNATS := flag.Bool("nats", true, "publish call events through an embedded (in-process) nats-server, as in production")
	flag.Parse()
	if *reqFile == "" || *addrFile == "" || *numbers < 1 || *agents < 1 || *variants < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*numbers, *agents, *variants, *reqFile, *addrFile, *withNATS); err != nil {
		log.Fatalf("webhook bench server: %v", err)
	}
}

func number(i int) string { return fmt.Sprintf("+1228%07d", i) }

func run(numbers, agents, variants int, reqFile, addrFile string, withNATS bool) error {
	b := routing.NewBuilder()
	b.AddIntegration(routing.Integration{ID: "int-bench", Workspace: "w1", Carrier: "twilio", AccountID: "ACbench", AuthToken: authToken})
	for i := range agents {
		b.AddAgent(routing.Agent{ID: fmt.Sprintf("agent-%d", i), Workspace: "w1", Endpoints: []routing.Endpoint{
			{Region: "us-east", URI: fmt.Sprintf("sip:agent%d@127.0.0.1:5090;transport=udp", i)},
			{Region: "eu-west", URI: fmt.Sprintf("sip:agent%d@127.0.0.2:5090;transport=udp", i)},
		}})
	}
	for i := range numbers {
		b.AddNumber(routing.Number{E164: number(i), Workspace: "w1", Carrier: "twilio", Origin: routing.OriginImported,
			Status: routing.StatusActive, AgentID: fmt.Sprintf("agent-%d", i%agents), VoiceRegion: "us-east", IntegrationID: "int-bench"})
	}
	table := &routing.Table{}
	table.Store(b.Build())

	var events calls.Publisher = calls.Discard{}
	if withNATS {
		ns, err := server.NewServer(&server.Options{DontListen: true, NoLog: true, NoSigs: true})
		if err != nil {
			return err
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			return errors.New("embedded nats-server not ready")
		}
		defer ns.Shutdown()
		nc, err := nats.Connect("", nats.InProcessServer(ns))
		if err != nil {
			return err
		}
		defer nc.Close()
		events = &calls.NATSPublisher{NC: nc, Region: "us-east"}
	}

	whLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	bareLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	publicURL := "http://" + whLn.Addr().String()
	reg := prometheus.NewRegistry()
	h, err := webhook.New(webhook.Config{
		PublicURL: publicURL,
		Region:    "us-east",
		Twilio:    webhook.TwilioConfig{Edges: map[string]string{"us-east": "ashburn", "eu-west": "dublin"}},
	}, webhook.Deps{Table: table, Events: events, Registerer: reg, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer h.Close()

	if err := writeRequests(reqFile, publicURL, numbers, variants); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/webhooks/", h.Routes())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	bareDoc := []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<Response><Dial><Sip>sip:agent1@127.0.0.1:5090;transport=udp</Sip></Dial></Response>`)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		w.Write(bareDoc)
	})
	srvs := []*http.Server{
		{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		{Handler: bare, ReadHeaderTimeout: 10 * time.Second},
	}
	go srvs[0].Serve(whLn)
	go srvs[1].Serve(bareLn)

	tmp := addrFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("webhook=%s\nbare=%s\n", whLn.Addr(), bareLn.Addr())), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, addrFile); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range srvs {
		s.Shutdown(sctx)
	}
	return nil
}

// writeRequests writes variants signed voice webhooks for numbers spread
// over the snapshot, as Twilio would send them.
func writeRequests(path, publicURL string, numbers, variants int) error {
	var sb strings.Builder
	step := max(numbers/variants, 1)
	for v := range variants {
		to := number((v * step) % numbers)
		p := url.Values{
			"AccountSid": {"ACbench"}, "ApiVersion": {"2010-04-01"},
			"CallSid": {fmt.Sprintf("CA%032x", v)}, "CallStatus": {"ringing"}, "Called": {to},
			"CalledCity": {"BILOXI"}, "CalledCountry": {"US"}, "CalledState": {"MS"}, "CalledZip": {"39530"},
			"Caller": {"+14155550100"}, "CallerCity": {"SAN FRANCISCO"}, "CallerCountry": {"US"}, "CallerState": {"CA"},
			"Direction": {"inbound"}, "From": {"+14155550100"}, "FromCountry": {"US"}, "To": {to}, "ToCountry": {"US"},
		}
		sig := webhook.TwilioSignature(authToken, publicURL+webhook.PathTwilioVoice, p)
		fmt.Fprintf(&sb, "%s\t%s\t%s\n", webhook.PathTwilioVoice, sig, p.Encode())
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}
