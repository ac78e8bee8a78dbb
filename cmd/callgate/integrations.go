package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) integrationsCommand() *cobra.Command {
	return a.group("integrations", "Connect carrier accounts (Twilio, Telnyx) and import the numbers they hold",
		a.integrationsCreate(), a.integrationsList(), a.integrationsShow(), a.integrationsDelete(),
		a.integrationsNumbers(), a.integrationsImport(), a.integrationsSetTermination(),
		a.integrationsSetSRTP())
}

func (a *app) integrationsCreate() *cobra.Command {
	var name, carrierName string
	var creds []string
	c := &cobra.Command{
		Use:   "create --carrier twilio|telnyx --credential KEY=VALUE...",
		Short: "Connect a carrier account (credentials are checked at the carrier first)",
		Long: `Connect a carrier account. The credentials are validated at the carrier first;
nothing is saved when they are refused. They are encrypted at rest and never
shown again.

  twilio: --credential account_sid=AC... --credential auth_token=-
  telnyx: --credential api_key=-

A VALUE of "-" is read from stdin (one line each, in order), which keeps
secrets out of the shell history.`,
		Args: noArgs,
	}
	f := c.Flags()
	f.StringVar(&name, "name", "", "name of the integration (default: the carrier's name)")
	f.StringVar(&carrierName, "carrier", "", "twilio or telnyx (required)")
	f.StringArrayVar(&creds, "credential", nil, "KEY=VALUE (repeat; VALUE - reads it from stdin)")
	_ = c.MarkFlagRequired("carrier")
	completeWords(c, "carrier", "twilio", "telnyx")
	c.RunE = a.runE(false, func(args []string) error {
		m := map[string]string{}
		for _, kv := range creds {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return usageErrorf("--credential %q: want KEY=VALUE", kv)
			}
			if k == "" {
				return usageErrorf("--credential: a KEY is missing before '='")
			}
			if v == "-" {
				fmt.Fprintf(a.errOut, "%s: ", k)
				line, err := a.in.ReadString('\n')
				if err != nil && line == "" {
					return usageErrorf("--credential %s=-: no value on stdin", k)
				}
				v = strings.TrimRight(line, "\r\n")
			}
			m[k] = v
		}
		if name == "" {
			name = carrierName
		}
		return a.show("POST", "/v1/integrations", map[string]any{"name": name, "carrier": carrierName, "credentials": m}, nil)
	})
	return c
}

type integrationView struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Carrier     string            `json:"carrier"`
	Credentials map[string]string `json:"credentials"`
	CreatedAt   time.Time         `json:"created_at"`
}

func (a *app) integrationsList() *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List integrations",
		Args:  noArgs,
	}
	c.RunE = a.runE(false, func(args []string) error {
		var res struct {
			Integrations []integrationView `json:"integrations"`
		}
		if done, err := a.get("/v1/integrations", &res); done || err != nil {
			return err
		}
		tw := a.table("ID", "NAME", "CARRIER", "CREDENTIALS", "CREATED")
		for _, it := range res.Integrations {
			var hints []string
			for k, v := range it.Credentials {
				hints = append(hints, k+"="+v)
			}
			sort.Strings(hints)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.ID, it.Name, it.Carrier, dash(strings.Join(hints, " ")), it.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	})
	return c
}

func (a *app) integrationsShow() *cobra.Command {
	c := &cobra.Command{
		Use:   "show ID",
		Short: "Show an integration (credentials masked)",
		Args:  exactArgs("ID"),
	}
	c.RunE = a.runE(false, func(args []string) error {
		return a.show("GET", "/v1/integrations/"+url.PathEscape(args[0]), nil, nil)
	})
	return c
}

func (a *app) integrationsDelete() *cobra.Command {
	c := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete an integration (refused while numbers use it)",
		Args:  exactArgs("ID"),
	}
	c.RunE = a.runE(false, func(args []string) error {
		if err := a.do("DELETE", "/v1/integrations/"+url.PathEscape(args[0]), nil, nil, nil); err != nil {
			return err
		}
		a.note("deleted integration %s", args[0])
		return nil
	})
	return c
}

func (a *app) integrationsNumbers() *cobra.Command {
	c := &cobra.Command{
		Use:   "numbers ID",
		Short: "Numbers on the carrier account and whether each can be imported",
		Args:  exactArgs("ID"),
	}
	c.RunE = a.runE(false, func(args []string) error {
		var res struct {
			Numbers []struct {
				PhoneNumber string            `json:"phone_number"`
				Features    map[string]bool   `json:"features"`
				Current     map[string]string `json:"current_settings"`
				Importable  bool              `json:"importable"`
				Reason      string            `json:"reason"`
			} `json:"numbers"`
		}
		if done, err := a.get("/v1/integrations/"+url.PathEscape(args[0])+"/numbers", &res); done || err != nil {
			return err
		}
		tw := a.table("NUMBER", "FEATURES", "IMPORTABLE", "VOICE URL", "NOTE")
		for _, n := range res.Numbers {
			imp := "no"
			if n.Importable {
				imp = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.PhoneNumber, dash(feat(n.Features)), imp, dash(n.Current["voice_url"]), dash(n.Reason))
		}
		return tw.Flush()
	})
	return c
}

func (a *app) integrationsImport() *cobra.Command {
	var mode, agent, country string
	var more []string
	var yes bool
	c := &cobra.Command{
		Use:   "import ID NUMBER... [--mode outbound_only|full_control]",
		Short: "Import numbers the carrier account holds (no credits)",
		Long: `Import numbers the carrier account holds into callgate; imported numbers cost
no credits. Give several numbers to import them together (as arguments, or
--number repeated).

  outbound_only (default)  nothing on the carrier account is changed
  full_control             the numbers' voice/SMS webhooks (or connection) are
                           pointed at callgate; their previous settings are
                           recorded so that they can be restored (asks first)`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageErrorf("%s: missing ID", cmd.CommandPath())
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&mode, "mode", "outbound_only", "outbound_only or full_control")
	f.StringVar(&agent, "agent", "", "assign the imported numbers to this agent")
	f.StringArrayVar(&more, "number", nil, "a number to import (repeat for several)")
	countryFlag(c, &country)
	yesFlag(c, &yes)
	completeWords(c, "mode", "outbound_only", "full_control")
	c.RunE = a.runE(false, func(args []string) error {
		if mode != "outbound_only" && mode != "full_control" {
			return usageErrorf("--mode %q: want outbound_only or full_control", mode)
		}
		var nums []string
		for _, raw := range append(args[1:], more...) {
			n, err := a.number(raw, country)
			if err != nil {
				return err
			}
			nums = append(nums, n)
		}
		if len(nums) == 0 {
			return usageErrorf("%s: missing NUMBER (give one or more)", c.CommandPath())
		}
		if mode == "full_control" && !yes {
			ok, err := a.confirm(fmt.Sprintf("Import %d number(s) with full_control? Their webhooks at the carrier will be pointed at callgate (the previous settings are recorded). [y/N] ", len(nums)))
			if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintln(a.errOut, "not imported")
				return nil
			}
		}
		body := map[string]any{"phone_numbers": nums, "webhook_mode": mode}
		if agent != "" {
			body["agent_id"] = agent
		}
		var raw json.RawMessage
		if err := a.do("POST", "/v1/integrations/"+url.PathEscape(args[0])+"/import", body, nil, &raw); err != nil {
			return err
		}
		var res struct {
			Results []struct {
				PhoneNumber string `json:"phone_number"`
				Status      string `json:"status"`
				Error       string `json:"error"`
			} `json:"results"`
			Imported int `json:"imported"`
			Failed   int `json:"failed"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return err
		}
		if a.json {
			if err := a.printJSON(raw); err != nil {
				return err
			}
		} else {
			tw := a.table("NUMBER", "STATUS", "ERROR")
			for _, r := range res.Results {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", a.spelled(r.PhoneNumber), r.Status, dash(a.spelled(r.Error)))
			}
			tw.Flush()
		}
		if res.Failed > 0 {
			return &cliError{code: exitError, title: "Import incomplete",
				msg: fmt.Sprintf("imported %d of %d numbers; %d failed (see each number's error)", res.Imported, res.Imported+res.Failed, res.Failed)}
		}
		return nil
	})
	return c
}
