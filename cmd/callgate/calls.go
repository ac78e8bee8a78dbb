package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) callsCommand() *cobra.Command {
	return a.group("calls", "Place calls; call history: list and show the workspace's calls", a.callsPlace(), a.callsList(), a.callsShow(), a.callsDTMF(), a.callsTransfer())
}

// callsRunE is runE with the admin key when --workspace names a workspace.
func (a *app) callsRunE(workspace *string, fn func(args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return a.runE(*workspace != "", fn)(cmd, args)
	}
}

// parseSince reads --since: an RFC 3339 time or a duration back from now.
func parseSince(s string, now time.Time) (string, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Format(time.RFC3339), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return "", usageErrorf("--since %q: want an RFC 3339 time (2026-11-03T09:00:00Z) or a duration (24h, 90m)", s)
	}
	return now.Add(-d).UTC().Format(time.RFC3339), nil
}

func (a *app) callsList() *cobra.Command {
	var number, agent, direction, outcome, since, until, cursor, workspace string
	var limit int
	var csv bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the workspace's calls, newest first",
		Args:  noArgs,
	}
	f := c.Flags()
	f.StringVar(&number, "number", "", "only calls of this number")
	f.StringVar(&agent, "agent", "", "only calls of this agent")
	f.StringVar(&direction, "direction", "", "inbound or outbound")
	f.StringVar(&outcome, "outcome", "", "answered, failed, busy, no_answer, rejected, cancelled or in_progress")
	f.StringVar(&since, "since", "", "calls started since: an RFC 3339 time or a duration back from now (24h)")
	f.StringVar(&until, "until", "", "calls started before this RFC 3339 time")
	f.IntVar(&limit, "limit", 0, "calls per page (default: the API's, 50; at most 500)")
	f.StringVar(&cursor, "cursor", "", "the next page (the cursor a previous page printed)")
	f.StringVar(&workspace, "workspace", "", "another workspace's calls (admin key)")
	f.BoolVar(&csv, "csv", false, "print CSV (the API's text/csv export)")
	completeWords(c, "direction", "inbound", "outbound")
	completeWords(c, "outcome", "answered", "failed", "busy", "no_answer", "rejected", "cancelled", "in_progress")
	c.RunE = a.callsRunE(&workspace, func(args []string) error {
		q := url.Values{}
		if number != "" {
			n, err := a.number(number, "")
			if err != nil {
				return err
			}
			q.Set("number", n)
		}
		for k, v := range map[string]string{"agent": agent, "direction": direction, "outcome": outcome, "to": until, "cursor": cursor, "workspace": workspace} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if since != "" {
			s, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			q.Set("from", s)
		}
		if changed(c, "limit") {
			q.Set("limit", strconv.Itoa(limit))
		}
		path := "/v1/calls"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		if csv {
			var raw json.RawMessage
			if err := a.do("GET", path, nil, map[string]string{"Accept": "text/csv"}, &raw); err != nil {
				return err
			}
			_, err := a.out.Write(raw)
			return err
		}
		var res struct {
			Calls []struct {
				ID, Direction, From, To, Number, Agent, Region, Outcome string
				StartedAt                                               time.Time `json:"started_at"`
				SetupMillis                                             *float64  `json:"setup_ms"`
				DurationS                                               float64   `json:"duration_s"`
				SIPStatus                                               int       `json:"sip_status"`
				EndReason                                               string    `json:"end_reason"`
			}
			Next *string `json:"next"`
		}
		if done, err := a.get(path, &res); done || err != nil {
			return err
		}
		tw := a.table("STARTED", "ID", "DIRECTION", "FROM", "TO", "AGENT", "OUTCOME", "STATUS", "REASON", "SETUP_MS", "DURATION_S")
		for _, r := range res.Calls {
			setup, status := "-", "-"
			if r.SetupMillis != nil {
				setup = strconv.FormatFloat(*r.SetupMillis, 'f', 1, 64)
			}
			if r.SIPStatus != 0 {
				status = strconv.Itoa(r.SIPStatus)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.StartedAt.Format(time.RFC3339), clipID(r.ID), r.Direction,
				dash(r.From), dash(r.To), dash(r.Agent), r.Outcome, status, dash(r.EndReason), setup, strconv.FormatFloat(r.DurationS, 'f', -1, 64))
		}
		tw.Flush()
		if res.Next != nil {
			fmt.Fprintf(a.out, "\nmore: --cursor %s\n", *res.Next)
		}
		return nil
	})
	return c
}

// clipID shortens a long Call-ID for the table (show prints it whole).
func clipID(id string) string {
	if len(id) > 40 {
		return id[:37] + "..."
	}
	return strings.ReplaceAll(id, "\t", " ")
}

func (a *app) callsShow() *cobra.Command {
	var workspace string
	c := &cobra.Command{
		Use:   "show ID",
		Short: "Show one call: routing, times, outcome, SIP status, media figures",
		Args:  exactArgs("ID"),
	}
	c.Flags().StringVar(&workspace, "workspace", "", "another workspace's call (admin key)")
	c.RunE = a.callsRunE(&workspace, func(args []string) error {
		path := "/v1/calls/" + url.PathEscape(args[0])
		if workspace != "" {
			path += "?workspace=" + url.QueryEscape(workspace)
		}
		return a.show("GET", path, nil, nil)
	})
	return c
}
