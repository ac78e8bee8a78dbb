package main

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// Forwarding, credits, workspaces, regions and the audit log.

func (a *app) forwardingCommand() *cobra.Command {
	return a.group("forwarding", "Business lines that forward calls to a gateway number",
		a.forwardingAdd(), a.forwardingList(), a.forwardingDelete())
}

func (a *app) forwardingAdd() *cobra.Command {
	var country string
	c := &cobra.Command{
		Use:   "add BUSINESS_NUMBER GATEWAY_NUMBER",
		Short: "Register a business line that forwards to a gateway number",
		Args:  exactArgs("BUSINESS_NUMBER", "GATEWAY_NUMBER"),
	}
	countryFlag(c, &country)
	c.RunE = a.runE(false, func(args []string) error {
		b, err := a.number(args[0], country)
		if err != nil {
			return err
		}
		g, err := a.number(args[1], country)
		if err != nil {
			return err
		}
		return a.show("POST", "/v1/forwarding", map[string]string{"business_number": b, "gateway_number": g}, nil)
	})
	return c
}

func (a *app) forwardingList() *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List business lines",
		Args:  noArgs,
	}
	c.RunE = a.runE(false, func(args []string) error {
		var res struct {
			Forwarding []struct {
				Business  string    `json:"business_number"`
				Gateway   string    `json:"gateway_number"`
				CreatedAt time.Time `json:"created_at"`
			} `json:"forwarding"`
		}
		if done, err := a.get("/v1/forwarding", &res); done || err != nil {
			return err
		}
		tw := a.table("BUSINESS NUMBER", "GATEWAY NUMBER", "CREATED")
		for _, f := range res.Forwarding {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Business, f.Gateway, f.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	})
	return c
}

func (a *app) forwardingDelete() *cobra.Command {
	var country string
	c := &cobra.Command{
		Use:   "delete BUSINESS_NUMBER",
		Short: "Remove a business line",
		Args:  exactArgs("BUSINESS_NUMBER"),
	}
	countryFlag(c, &country)
	c.RunE = a.runE(false, func(args []string) error {
		b, err := a.number(args[0], country)
		if err != nil {
			return err
		}
		if err := a.do("DELETE", "/v1/forwarding/"+url.PathEscape(b), nil, nil, nil); err != nil {
			return err
		}
		a.note("removed business line %s", b)
		return nil
	})
	return c
}

func (a *app) creditsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "credits",
		Short: "Balance and ledger (credits topup: admin)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
	}
	c.RunE = a.runE(false, func(args []string) error {
		var res struct {
			Workspace string
			Balance   int64
			Entries   []struct {
				Time                 time.Time
				Kind, Number, Reason string
				Amount, Balance      int64
				CallID               string `json:"call_id"`
			}
		}
		if done, err := a.get("/v1/credits", &res); done || err != nil {
			return err
		}
		fmt.Fprintf(a.out, "workspace %s: %d credits\n\n", res.Workspace, res.Balance)
		tw := a.table("TIME", "KIND", "AMOUNT", "BALANCE", "NUMBER", "CALL", "REASON")
		for _, e := range res.Entries {
			fmt.Fprintf(tw, "%s\t%s\t%+d\t%d\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Kind, e.Amount, e.Balance, dash(e.Number), dash(e.CallID), e.Reason)
		}
		return tw.Flush()
	})
	c.AddCommand(a.creditsTopup())
	return c
}

func (a *app) creditsTopup() *cobra.Command {
	var reason, idem string
	c := &cobra.Command{
		Use:   "topup WORKSPACE AMOUNT",
		Short: "Top up a workspace's credits (admin key)",
		Args:  exactArgs("WORKSPACE", "AMOUNT"),
	}
	c.Flags().StringVar(&reason, "reason", "", "reason recorded in the ledger")
	c.Flags().StringVar(&idem, "idempotency-key", "", "Idempotency-Key: a retry with the same key and amount credits once")
	c.RunE = a.runE(true, func(args []string) error {
		amt, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			return usageErrorf("AMOUNT %q is not an integer", args[1])
		}
		body := map[string]any{"amount": amt}
		if reason != "" {
			body["reason"] = reason
		}
		hdr := map[string]string{}
		if idem != "" {
			hdr["Idempotency-Key"] = idem
		}
		return a.show("POST", "/v1/workspaces/"+url.PathEscape(args[0])+"/credits", body, hdr)
	})
	return c
}

func (a *app) workspacesCommand() *cobra.Command {
	var name string
	var credits int64
	create := &cobra.Command{
		Use:   "create ID",
		Short: "Create a workspace (admin key); its API key is shown once",
		Args:  exactArgs("ID"),
	}
	create.Flags().StringVar(&name, "name", "", "display name (default: the ID)")
	create.Flags().Int64Var(&credits, "credits", 0, "initial credits")
	create.RunE = a.runE(true, func(args []string) error {
		n := name
		if n == "" {
			n = args[0]
		}
		return a.show("POST", "/v1/workspaces", map[string]any{"id": args[0], "name": n, "credits": credits}, nil)
	})
	return a.group("workspaces", "Create workspaces (admin key)", create)
}

func (a *app) regionsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "regions",
		Short: "Regions and endpoint health as probed from this node",
		Args:  noArgs,
	}
	c.RunE = a.runE(false, func(args []string) error {
		var res struct {
			Regions []struct {
				Name      string `json:"name"`
				Healthy   int    `json:"healthy_endpoints"`
				Endpoints []struct {
					URI       string    `json:"uri"`
					RTTMillis float64   `json:"rtt_ms"`
					Up        bool      `json:"up"`
					Probed    bool      `json:"probed"`
					LastProbe time.Time `json:"last_probe"`
				} `json:"endpoints"`
			} `json:"regions"`
		}
		if done, err := a.get("/v1/regions", &res); done || err != nil {
			return err
		}
		tw := a.table("REGION", "HEALTHY", "ENDPOINT", "STATE", "RTT", "LAST PROBE")
		for _, r := range res.Regions {
			for _, e := range r.Endpoints {
				state, rtt, last := "down", "-", "-"
				switch {
				case !e.Probed:
					state = "unprobed"
				case e.Up:
					state = "up"
				}
				if e.Probed && e.Up {
					rtt = strconv.FormatFloat(e.RTTMillis, 'f', 1, 64) + " ms"
				}
				if !e.LastProbe.IsZero() {
					last = e.LastProbe.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\n", r.Name, r.Healthy, len(r.Endpoints), e.URI, state, rtt, last)
			}
		}
		return tw.Flush()
	})
	return c
}

func (a *app) auditCommand() *cobra.Command {
	var workspace, action string
	var limit int
	var before uint64
	c := &cobra.Command{
		Use:   "audit",
		Short: "Audit records, newest first (admin key)",
		Args:  noArgs,
	}
	f := c.Flags()
	f.StringVar(&workspace, "workspace", "", "only this workspace's records")
	f.StringVar(&action, "action", "", "only this action (e.g. number.purchase, credits.top_up, auth.failed)")
	f.IntVar(&limit, "limit", 0, "records per page (default: the API's)")
	f.Uint64Var(&before, "before", 0, "records before this seq (the next page; from a previous page)")
	completeWords(c, "action", "workspace.create", "credits.top_up", "number.purchase", "number.release",
		"number.import", "integration.create", "integration.delete", "auth.failed", "auth.forbidden")
	c.RunE = a.runE(true, func(args []string) error {
		q := url.Values{}
		if workspace != "" {
			q.Set("workspace", workspace)
		}
		if action != "" {
			q.Set("action", action)
		}
		if changed(c, "limit") {
			q.Set("limit", strconv.Itoa(limit))
		}
		if changed(c, "before") {
			q.Set("before", strconv.FormatUint(before, 10))
		}
		path := "/v1/audit"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		var res struct {
			Records []struct {
				Seq                                              uint64
				Time                                             time.Time
				Action, Result, Workspace, Actor, Target, Detail string
				Status                                           int
			}
			NextBefore *uint64 `json:"next_before"`
		}
		if done, err := a.get(path, &res); done || err != nil {
			return err
		}
		tw := a.table("SEQ", "TIME", "ACTION", "RESULT", "STATUS", "WORKSPACE", "ACTOR", "TARGET", "DETAIL")
		for _, r := range res.Records {
			status := "-"
			if r.Status != 0 {
				status = strconv.Itoa(r.Status)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.Format(time.RFC3339), r.Action, r.Result, status,
				dash(r.Workspace), r.Actor, dash(r.Target), dash(r.Detail))
		}
		tw.Flush()
		if res.NextBefore != nil {
			fmt.Fprintf(a.out, "\nmore: --before %d\n", *res.NextBefore)
		}
		return nil
	})
	return c
}
