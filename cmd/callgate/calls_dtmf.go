package main

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/callgate/callgate/gateway/calls"
)

// callsDTMF is `callgate calls dtmf ID DIGITS`: POST /v1/calls/{id}/dtmf.
func (a *app) callsDTMF() *cobra.Command {
	c := &cobra.Command{
		Use:   "dtmf ID DIGITS",
		Short: "Send DTMF digits to the caller of a call in progress (0-9 * # A-D; w = 0.5 s pause)",
		Long: "Send DTMF digits to the phone side of a call in progress: RFC 4733 events in its media when it\n" +
			"is relayed and the phone side negotiated them, SIP INFO otherwise; Telnyx Call Control's\n" +
			"send_dtmf for Telnyx calls (Twilio calls cannot get digits). w is a 0.5 s pause.\n" +
			"Example: callgate calls dtmf 3c1f...@10.0.0.1 '12w34#'",
		Args: exactArgs("ID", "DIGITS"),
	}
	c.RunE = a.runE(false, func(args []string) error {
		if !calls.ValidDTMF(args[1]) {
			return usageErrorf("DIGITS %q: 1 to %d of 0-9, *, #, A-D and w", args[1], calls.MaxDTMFDigits)
		}
		var raw json.RawMessage
		if err := a.do("POST", "/v1/calls/"+url.PathEscape(args[0])+"/dtmf", map[string]string{"digits": args[1]}, nil, &raw); err != nil {
			return err
		}
		if a.json {
			return a.printJSON(raw)
		}
		var r struct {
			Via string `json:"via"`
		}
		_ = json.Unmarshal(raw, &r)
		fmt.Fprintf(a.out, "queued %s (via %s)\n", args[1], r.Via)
		return nil
	})
	return c
}
