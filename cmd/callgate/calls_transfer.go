package main

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"
)

// callsTransfer is `callgate calls transfer`: POST /v1/calls/{id}/transfer.
func (a *app) callsTransfer() *cobra.Command {
	var to, mode string
	c := &cobra.Command{
		Use:   "transfer ID --to TARGET [--mode blind|bridge]",
		Short: "Transfer a running call's caller to a number (tel:+E.164), an agent (agent:ID) or a SIP URI",
		Long: "Transfer a running, answered call's caller. --mode blind (default) asks the caller's carrier to\n" +
			"place the new leg (SIP REFER); its progress and outcome are the call's transfer events and\n" +
			"show in `callgate calls show ID`; a carrier that refuses is bridged instead. --mode bridge makes\n" +
			"callgate place the new leg itself (through the number's carrier for a phone number) and connect\n" +
			"the caller to it when it answers (relayed media is re-pointed; on direct media callgate re-INVITEs\n" +
			"the caller to the new leg's media); agents are always bridged.\n" +
			"Calls placed through Twilio or Telnyx, and calls that reached the agent by their webhooks, are\n" +
			"transferred to a number with the carrier's own verb (TwiML <Dial> on a redirect, Call Control transfer).",
		Args: exactArgs("ID"),
	}
	f := c.Flags()
	f.StringVar(&to, "to", "", "tel:+E.164 (or +E.164), agent:ID (sip:agent=ID@callgate), or a sip: URI")
	f.StringVar(&mode, "mode", "blind", "blind (REFER to the caller's carrier) or bridge (callgate places the new leg)")
	c.RunE = a.runE(false, func(args []string) error {
		if to == "" {
			return usageErrorf("--to is required")
		}
		if mode != "blind" && mode != "bridge" {
			return usageErrorf("--mode %q: want blind or bridge", mode)
		}
		var raw json.RawMessage
		if err := a.do("POST", "/v1/calls/"+url.PathEscape(args[0])+"/transfer", map[string]string{"to": to, "mode": mode}, nil, &raw); err != nil {
			return err
		}
		if a.json {
			return a.printJSON(raw)
		}
		var r struct{ To, Mode, State string }
		_ = json.Unmarshal(raw, &r)
		fmt.Fprintf(a.out, "transfer to %s (%s): %s; follow it with `callgate calls show %s`\n", r.To, r.Mode, r.State, args[0])
		return nil
	})
	return c
}
