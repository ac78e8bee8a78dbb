package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// Workspace settings, agents' SIP credentials, number call control and
// integration termination (issues 12 and 13).

func (a *app) workspaceCommand() *cobra.Command {
	return a.group("workspace", "Show and change this workspace's settings (routing hook, limits, outbound policy, webhook secret)",
		a.workspaceGet(), a.workspaceSet(), a.workspaceRotateSecret())
}

func (a *app) workspaceGet() *cobra.Command {
	c := &cobra.Command{
		Use:   "get",
		Short: "Show the workspace's settings",
		Args:  noArgs,
	}
	c.RunE = a.runE(false, func(args []string) error {
		return a.show("GET", "/v1/workspace", nil, nil)
	})
	return c
}

// hookFlags are the flags of a routing hook (workspace set, numbers set).
type hookFlags struct {
	url, onFailure string
	timeoutMS      int
	none           bool
}

func (h *hookFlags) add(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&h.url, "routing-hook-url", "", "https:// URL asked where each new inbound call goes")
	fl.IntVar(&h.timeoutMS, "routing-hook-timeout-ms", 0, "how long a call waits for the hook (1-5000, default 1500)")
	fl.StringVar(&h.onFailure, "routing-hook-on-failure", "", "static (route as without a hook) or reject")
	fl.BoolVar(&h.none, "no-routing-hook", false, "remove the routing hook")
	completeWords(c, "routing-hook-on-failure", "static", "reject")
}

// set puts the hook flags given into body; an error when they conflict.
func (h *hookFlags) set(c *cobra.Command, body map[string]any) error {
	given := changed(c, "routing-hook-url") || changed(c, "routing-hook-timeout-ms") || changed(c, "routing-hook-on-failure")
	if h.none {
		if given {
			return usageErrorf("--no-routing-hook and --routing-hook-* flags together")
		}
		body["routing_hook"] = nil
		return nil
	}
	if !given {
		return nil
	}
	hook := map[string]any{}
	if changed(c, "routing-hook-url") {
		hook["url"] = h.url
	}
	if changed(c, "routing-hook-timeout-ms") {
		hook["timeout_ms"] = h.timeoutMS
	}
	if changed(c, "routing-hook-on-failure") {
		hook["on_failure"] = h.onFailure
	}
	body["routing_hook"] = hook
	return nil
}

func (a *app) workspaceSet() *cobra.Command {
	var (
		h                                                    hookFlags
		name                                                 string
		maxCalls, maxCPS, outMaxCalls, outMaxCPS             int
		countries                                            []string
		allowPremium, allowSharedCost, allowUAN, noCountries bool
		hdrAllow, hdrKeep                                    []string
	)
	c := &cobra.Command{
		Use:   "set",
		Short: "Change the workspace's settings: the ones given by flags; the others are kept",
		Long: `Change the workspace's settings: the ones given by flags; the others are kept.
Limits of 0 mean no limit. --outbound-countries lists the ISO country codes
outbound calls may reach (empty: the caller ID's own country only).`,
		Args: noArgs,
	}
	h.add(c)
	fl := c.Flags()
	fl.StringVar(&name, "name", "", "display name")
	fl.IntVar(&maxCalls, "max-concurrent-calls", 0, "calls at once, inbound and outbound (0: no limit)")
	fl.IntVar(&maxCPS, "max-calls-per-second", 0, "new calls per second, inbound and outbound (0: no limit)")
	fl.StringSliceVar(&countries, "outbound-countries", nil, "countries outbound calls may reach, e.g. US,CA")
	fl.BoolVar(&noCountries, "no-outbound-countries", false, "outbound calls reach the caller ID's own country only")
	fl.BoolVar(&allowPremium, "allow-premium", false, "allow premium-rate destinations")
	fl.BoolVar(&allowSharedCost, "allow-shared-cost", false, "allow shared-cost destinations")
	fl.BoolVar(&allowUAN, "allow-uan", false, "allow universal access numbers")
	fl.IntVar(&outMaxCalls, "outbound-max-concurrent-calls", 0, "outbound calls at once (0: no cap)")
	fl.IntVar(&outMaxCPS, "outbound-max-calls-per-second", 0, "new outbound calls per second (0: no cap)")
	fl.StringSliceVar(&hdrAllow, "sip-headers-allow", nil, `custom SIP headers that pass between caller and agent, e.g. X-Acme-*,User-to-User (default X-*,User-to-User; "" lets none pass)`)
	fl.StringSliceVar(&hdrKeep, "sip-headers-keep", nil, "custom SIP headers whose values call history keeps, e.g. X-Ticket")
	c.RunE = a.runE(false, func(args []string) error {
		body := map[string]any{}
		if err := h.set(c, body); err != nil {
			return err
		}
		if changed(c, "name") {
			body["name"] = name
		}
		limits, outbound := map[string]any{}, map[string]any{}
		for _, f := range []struct {
			flag, key string
			dst       map[string]any
			v         any
		}{
			{"max-concurrent-calls", "max_concurrent_calls", limits, maxCalls},
			{"max-calls-per-second", "max_calls_per_second", limits, maxCPS},
			{"outbound-countries", "allowed_countries", outbound, countries},
			{"allow-premium", "allow_premium", outbound, allowPremium},
			{"allow-shared-cost", "allow_shared_cost", outbound, allowSharedCost},
			{"allow-uan", "allow_uan", outbound, allowUAN},
			{"outbound-max-concurrent-calls", "max_concurrent_calls", outbound, outMaxCalls},
			{"outbound-max-calls-per-second", "max_calls_per_second", outbound, outMaxCPS},
		} {
			if changed(c, f.flag) {
				f.dst[f.key] = f.v
			}
		}
		if noCountries {
			if changed(c, "outbound-countries") {
				return usageErrorf("--outbound-countries and --no-outbound-countries together")
			}
			outbound["allowed_countries"] = []string{}
		}
		if len(limits) > 0 {
			body["limits"] = limits
		}
		if len(outbound) > 0 {
			body["outbound"] = outbound
		}
		if hdrs := sipHeadersBody(c, hdrAllow, hdrKeep); hdrs != nil {
			body["sip_headers"] = hdrs
		}
		if len(body) == 0 {
			return usageErrorf("workspace set: nothing to change (see callgate workspace set --help)")
		}
		return a.show("PATCH", "/v1/workspace", body, nil)
	})
	return c
}

func (a *app) workspaceRotateSecret() *cobra.Command {
	c := &cobra.Command{
		Use:   "rotate-secret",
		Short: "Replace the webhook secret that signs hook requests and deliveries (shown once)",
		Args:  noArgs,
	}
	c.RunE = a.runE(false, func(args []string) error {
		return a.show("POST", "/v1/workspace/webhook-secret", nil, nil)
	})
	return c
}

func (a *app) agentsCredentials() *cobra.Command {
	create := &cobra.Command{
		Use:   "create AGENT",
		Short: "Issue a SIP digest credential for an agent (the password is shown once)",
		Args:  exactArgs("AGENT"),
	}
	create.RunE = a.runE(false, func(args []string) error {
		return a.show("POST", "/v1/agents/"+url.PathEscape(args[0])+"/sip-credentials", nil, nil)
	})
	list := &cobra.Command{
		Use:   "list AGENT",
		Short: "List an agent's SIP credentials (never passwords)",
		Args:  exactArgs("AGENT"),
	}
	list.RunE = a.runE(false, func(args []string) error {
		var res struct {
			SIPCredentials []struct {
				Username  string `json:"username"`
				Realm     string `json:"realm"`
				CreatedAt string `json:"created_at"`
			} `json:"sip_credentials"`
		}
		if done, err := a.get("/v1/agents/"+url.PathEscape(args[0])+"/sip-credentials", &res); done || err != nil {
			return err
		}
		tw := a.table("USERNAME", "REALM", "CREATED")
		for _, c := range res.SIPCredentials {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Username, c.Realm, c.CreatedAt)
		}
		return tw.Flush()
	})
	revoke := &cobra.Command{
		Use:   "revoke AGENT USERNAME",
		Short: "Revoke one of an agent's SIP credentials",
		Args:  exactArgs("AGENT", "USERNAME"),
	}
	revoke.RunE = a.runE(false, func(args []string) error {
		if err := a.do("DELETE", "/v1/agents/"+url.PathEscape(args[0])+"/sip-credentials/"+url.PathEscape(args[1]), nil, nil, nil); err != nil {
			return err
		}
		a.note("revoked SIP credential %s of agent %s", args[1], args[0])
		return nil
	})
	return a.group("credentials", "Issue, list and revoke agents' SIP credentials", create, list, revoke)
}

// parseAgentWeights reads --agents ID:WEIGHT,...
func parseAgentWeights(v string) ([]map[string]any, error) {
	out := []map[string]any{}
	for _, e := range strings.Split(v, ",") {
		if e == "" {
			continue
		}
		id, w, ok := strings.Cut(e, ":")
		n, err := strconv.Atoi(w)
		if !ok || err != nil {
			return nil, usageErrorf("--agents %q: want AGENT_ID:WEIGHT,...", e)
		}
		out = append(out, map[string]any{"agent_id": id, "weight": n})
	}
	return out, nil
}

// parseFallback reads --fallback STEP,...: agent:ID, a sip:/sips: URI or
// a phone number.
func parseFallback(v string) []map[string]string {
	out := []map[string]string{}
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
		case strings.HasPrefix(e, "agent:"):
			out = append(out, map[string]string{"agent_id": strings.TrimPrefix(e, "agent:")})
		case strings.HasPrefix(strings.ToLower(e), "sip:"), strings.HasPrefix(strings.ToLower(e), "sips:"):
			out = append(out, map[string]string{"uri": e})
		default:
			out = append(out, map[string]string{"number": e})
		}
	}
	return out
}

func (a *app) numbersSet() *cobra.Command {
	var (
		h                                    hookFlags
		country, agent, agents, sms, fb, reg string
	)
	c := &cobra.Command{
		Use:   "set NUMBER",
		Short: "Change a number's call control: agent(s), SMS agent, fallback, routing hook, region",
		Long: `Change a number's call control; the settings not given are kept.

  --agent ID                 one agent takes every call (clears --agents)
  --agents a:70,b:30         split new calls by weight (1-1000; the first agent
                             becomes the number's agent_id)
  --sms-agent ID             messages go to this agent ("" clears)
  --fallback agent:b,sip:backup@203.0.113.9,+14155550100
                             tried in order when the agent fails ("" clears)`,
		Args: exactArgs("NUMBER"),
	}
	h.add(c)
	fl := c.Flags()
	fl.StringVar(&agent, "agent", "", `the agent that takes every call ("" unassigns)`)
	fl.StringVar(&agents, "agents", "", "AGENT_ID:WEIGHT,... (\"\" removes the split)")
	fl.StringVar(&sms, "sms-agent", "", "agent that receives the number's messages")
	fl.StringVar(&fb, "fallback", "", "fallback steps: agent:ID, sip: URI or phone number, comma-separated")
	fl.StringVar(&reg, "region", "", "voice region (Twilio numbers: us1, ie1, au1)")
	countryFlag(c, &country)
	c.RunE = a.runE(false, func(args []string) error {
		num, err := a.number(args[0], country)
		if err != nil {
			return err
		}
		body := map[string]any{}
		if err := h.set(c, body); err != nil {
			return err
		}
		if changed(c, "agent") && changed(c, "agents") {
			return usageErrorf("--agent and --agents together: give one")
		}
		if changed(c, "agent") {
			body["agent_id"] = agent
		}
		if changed(c, "agents") {
			ws, err := parseAgentWeights(agents)
			if err != nil {
				return err
			}
			body["agents"] = ws
		}
		if changed(c, "sms-agent") {
			body["sms_agent_id"] = sms
		}
		if changed(c, "fallback") {
			body["fallback"] = parseFallback(fb)
		}
		if changed(c, "region") {
			body["voice_region"] = reg
		}
		if len(body) == 0 {
			return usageErrorf("numbers set: nothing to change (see callgate numbers set --help)")
		}
		return a.show("PATCH", "/v1/numbers/"+url.PathEscape(num), body, nil)
	})
	return c
}

func (a *app) integrationsSetTermination() *cobra.Command {
	var (
		uris           []string
		user, password string
		none           bool
	)
	c := &cobra.Command{
		Use:   "set-termination ID --uri sip:TRUNK...",
		Short: "Set the SIP termination outbound calls of the integration's numbers leave through",
		Long: `Set the SIP termination outbound calls of the integration's numbers leave
through (e.g. --uri sip:mytrunk.pstn.twilio.com), with digest credentials
(--username, --password - to read it from stdin) or none (IP authentication).
The credentials are stored encrypted and never shown again. --none removes
the termination.`,
		Args: exactArgs("ID"),
	}
	fl := c.Flags()
	fl.StringArrayVar(&uris, "uri", nil, "termination URI (repeat or join with commas, in the order to try)")
	fl.StringVar(&user, "username", "", "digest user name")
	fl.StringVar(&password, "password", "", `digest password ("-" reads it from stdin)`)
	fl.BoolVar(&none, "none", false, "remove the termination")
	c.RunE = a.runE(false, func(args []string) error {
		path := "/v1/integrations/" + url.PathEscape(args[0])
		if none {
			if len(uris) > 0 || changed(c, "username") || changed(c, "password") {
				return usageErrorf("--none and other flags together")
			}
			return a.show("PATCH", path, map[string]any{"termination": nil}, nil)
		}
		t := map[string]any{}
		var list []string
		for _, u := range uris {
			for _, x := range strings.Split(u, ",") {
				if x = strings.TrimSpace(x); x != "" {
					list = append(list, x)
				}
			}
		}
		if len(list) > 0 {
			t["uris"] = list
		}
		if changed(c, "username") {
			t["username"] = user
		}
		if changed(c, "password") {
			if password == "-" {
				fmt.Fprint(a.errOut, "password: ")
				line, err := a.in.ReadString('\n')
				if err != nil && line == "" {
					return usageErrorf("--password -: no value on stdin")
				}
				password = strings.TrimRight(line, "\r\n")
			}
			t["password"] = password
		}
		if len(t) == 0 {
			return usageErrorf("integrations set-termination: give --uri, --username/--password or --none")
		}
		return a.show("PATCH", path, map[string]any{"termination": t}, nil)
	})
	return c
}

// sipHeadersBody is sip_headers of PATCH /v1/workspace from the
// --sip-headers-* flags given (nil: none given).
func sipHeadersBody(c *cobra.Command, allow, keep []string) map[string]any {
	h := map[string]any{}
	if changed(c, "sip-headers-allow") {
		h["allow"] = append([]string{}, allow...)
	}
	if changed(c, "sip-headers-keep") {
		h["keep"] = append([]string{}, keep...)
	}
	if len(h) == 0 {
		return nil
	}
	return h
}
