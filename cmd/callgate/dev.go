package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/callgate/callgate/provisioning/carrier/telnyx/telnyxfake"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// dev runs developer helpers: `callgate dev fake-carrier` starts local
// Twilio and Telnyx API simulators with demo accounts so the import and
// purchase flows can be walked through the API without carrier accounts.
func dev(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "agent":
			return devAgent(args[1:])
		case "call":
			return devCall(args[1:])
		}
	}
	if len(args) == 0 || args[0] != "fake-carrier" {
		return fmt.Errorf("usage: callgate dev fake-carrier [--twilio-addr 127.0.0.1:8701] [--telnyx-addr 127.0.0.1:8702]\n       callgate dev agent [--listen 127.0.0.1:5090] [--tone HZ] [--record DIR]\n       callgate dev call NUMBER [--gateway 127.0.0.1:5060] [--play FILE] [--record FILE] [--duration 5s]")
	}
	fs := flag.NewFlagSet("dev fake-carrier", flag.ContinueOnError)
	twAddr := fs.String("twilio-addr", "127.0.0.1:8701", "Twilio simulator listen address")
	txAddr := fs.String("telnyx-addr", "127.0.0.1:8702", "Telnyx simulator listen address")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	to := twiliofake.DemoOptions()
	to.Addr = *twAddr
	tw, err := twiliofake.New(nil, to)
	if err != nil {
		return err
	}
	defer tw.Close()
	xo := telnyxfake.DemoOptions()
	xo.Addr = *txAddr
	tx, err := telnyxfake.New(nil, xo)
	if err != nil {
		return err
	}
	defer tx.Close()
	fmt.Printf(`Carrier simulators running (Ctrl-C to stop).

Start callgate against them:
  CALLGATE_TWILIO_API_BASE=%s CALLGATE_TELNYX_API_BASE=%s CALLGATE_PUBLIC_URL=http://127.0.0.1:8080 make run

Demo Twilio account:  account_sid=%s auth_token=%s
Demo Telnyx account:  api_key=%s

  callgate integrations create --name demo --carrier twilio --credential account_sid=%s --credential auth_token=%s
  callgate integrations import INTEGRATION_ID 4155550101 --mode full_control

or over HTTP:

  curl -H "Authorization: Bearer $(cat data/api-key)" -X POST http://127.0.0.1:8080/v1/integrations \
    -d '{"name":"demo","carrier":"twilio","credentials":{"account_sid":"%s","auth_token":"%s"}}'
`, tw.URL(), tx.URL(), tw.AccountSID(), tw.AuthToken(), tx.APIKey(), tw.AccountSID(), tw.AuthToken(), tw.AccountSID(), tw.AuthToken())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}
