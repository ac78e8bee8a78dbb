package main

import (
	"net/url"

	"github.com/spf13/cobra"
)

// integrationsSetSRTP: PATCH /v1/integrations/{id} {"srtp": ...}
// (README "Secure media (SRTP)").
func (a *app) integrationsSetSRTP() *cobra.Command {
	c := &cobra.Command{
		Use:   "set-srtp ID off|optional|required",
		Short: "Set the secure media (SRTP) policy of calls from the integration's carrier account",
		Long: `Set the secure media policy of relayed calls from this carrier account to the
workspace's numbers: off (default), optional (SRTP when the carrier offers it)
or required (a carrier offer without SRTP is refused with 488). The stricter of
this and the SIP trunk's srtp applies; SDES keys are only exchanged over TLS.`,
		Args: exactArgs("ID", "POLICY"),
	}
	c.RunE = a.runE(false, func(args []string) error {
		return a.show("PATCH", "/v1/integrations/"+url.PathEscape(args[0]), map[string]any{"srtp": args[1]}, nil)
	})
	return c
}
