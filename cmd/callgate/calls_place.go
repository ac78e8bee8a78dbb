package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

// callsPlace is `callgate calls place`: POST /v1/calls; prints the call id
// (the whole call with --json).
func (a *app) callsPlace() *cobra.Command {
	var from, to, agent, idem, country string
	c := &cobra.Command{
		Use:   "place --from NUMBER --to NUMBER --agent AGENT",
		Short: "Place a call from a number of the workspace and connect the callee to an agent when they answer",
		Args:  noArgs,
	}
	f := c.Flags()
	f.StringVar(&from, "from", "", "caller ID: a number of the workspace (or a registered business line)")
	f.StringVar(&to, "to", "", "the number to call")
	f.StringVar(&agent, "agent", "", "the agent that takes the call")
	f.StringVar(&idem, "idempotency-key", "", "Idempotency-Key: a retry with the same key places the call once")
	countryFlag(c, &country)
	c.RunE = a.runE(false, func(args []string) error {
		for _, v := range [][2]string{{"--from", from}, {"--to", to}, {"--agent", agent}} {
			if v[1] == "" {
				return usageErrorf("%s is required", v[0])
			}
		}
		fromN, err := a.number(from, country)
		if err != nil {
			return err
		}
		toN, err := a.number(to, country)
		if err != nil {
			return err
		}
		hdr := map[string]string{}
		if idem != "" {
			hdr["Idempotency-Key"] = idem
		}
		var raw json.RawMessage
		if err := a.do("POST", "/v1/calls", map[string]string{"from": fromN, "to": toN, "agent_id": agent}, hdr, &raw); err != nil {
			return err
		}
		if a.json {
			return a.printJSON(raw)
		}
		var call struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(raw, &call)
		fmt.Fprintln(a.out, call.ID)
		return nil
	})
	return c
}
