package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// client talks to the API.
type client struct {
	api, key string
	json     bool
	yes      bool
	out      io.Writer
	in       io.Reader
	http     *http.Client
}

type apiError struct {
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Errors []struct {
		Field, Message string
	} `json:"errors"`
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%d %s", e.Status, e.Title)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (c *client) do(method, path string, body any, hdr map[string]string, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimRight(c.api, "/")+path, rd)
	if err != nil {
		return err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the callgate API at %s: %w (is `callgate serve` running? set --api)", c.api, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var pe apiError
		if json.Unmarshal(b, &pe) == nil && pe.Status != 0 {
			return &pe
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil && len(b) > 0 {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = append((*raw)[:0], b...)
			return nil
		}
		return json.Unmarshal(b, out)
	}
	return nil
}

func cli(group string, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet(group, flag.ContinueOnError)
	apiURL := fs.String("api", envOr("CALLGATE_API", "http://127.0.0.1:8080"), "API base URL")
	key := fs.String("key", os.Getenv("CALLGATE_API_KEY"), "API key (default: <data-dir>/api-key)")
	dataDir := fs.String("data-dir", envOr("CALLGATE_DATA_DIR", "./data"), "data dir holding api-key/admin-key")
	asJSON := fs.Bool("json", false, "print JSON")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	// Per-command flags.
	country := fs.String("country", "US", "search: ISO country code")
	areaCode := fs.String("area-code", "", "search: area code")
	typ := fs.String("type", "", "search: local, mobile, toll_free, national")
	features := fs.String("features", "", "search: voice,sms,mms")
	limit := fs.Int("limit", 20, "search: results per page")
	pageToken := fs.String("page-token", "", "search: next page token")
	carrierName := fs.String("carrier", "sandbox", "search/buy: sandbox, twilio, telnyx")
	integration := fs.String("integration", "", "search/buy: integration id (twilio, telnyx)")
	idem := fs.String("idempotency-key", "", "buy: Idempotency-Key")
	name := fs.String("name", "", "agents create: name")
	endpoints := fs.String("endpoint", "", "agents create: REGION=URI[,REGION=URI...]")
	media := fs.String("media", "", "agents create: direct or relay")
	credits := fs.Int64("credits", 0, "workspaces create: initial credits")
	region := fs.String("region", "", "numbers assign: voice region")

	// Flags may come after positional arguments: split them.
	var pos []string
	rest := args
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		rest = fs.Args()
		if len(rest) > 0 {
			pos = append(pos, rest[0])
			rest = rest[1:]
		}
	}
	c := &client{api: *apiURL, key: *key, json: *asJSON, yes: *yes, out: stdout, in: stdin, http: &http.Client{Timeout: 60 * time.Second}}
	admin := group == "workspaces" || (group == "credits" && len(pos) > 0 && pos[0] == "topup")
	if c.key == "" {
		f := "api-key"
		if admin {
			f = "admin-key"
		}
		b, err := os.ReadFile(filepath.Join(*dataDir, f))
		if err != nil {
			return fmt.Errorf("no API key: pass --key, set CALLGATE_API_KEY, or run next to the data dir (%s: %v)", filepath.Join(*dataDir, f), err)
		}
		c.key = strings.TrimSpace(string(b))
	}
	sub := ""
	if len(pos) > 0 {
		sub, pos = pos[0], pos[1:]
	}
	need := func(n int, what string) error {
		if len(pos) < n {
			return fmt.Errorf("%s %s: missing %s", group, sub, what)
		}
		return nil
	}
	switch group + " " + sub {
	case "numbers search":
		q := url.Values{"country": {*country}, "carrier": {*carrierName}, "limit": {strconv.Itoa(*limit)}}
		for k, v := range map[string]string{"area_code": *areaCode, "type": *typ, "features": *features, "page_token": *pageToken, "integration_id": *integration} {
			if v != "" {
				q.Set(k, v)
			}
		}
		var res struct {
			Numbers []struct {
				PhoneNumber string `json:"phone_number"`
				Country     string
				Region      string
				Locality    string
				Type        string
				Carrier     string
				Features    map[string]bool
				MonthlyCost int64 `json:"monthly_cost"`
			}
			NextPageToken string `json:"next_page_token"`
		}
		var raw json.RawMessage
		if err := c.do("GET", "/v1/marketplace/numbers?"+q.Encode(), nil, nil, &raw); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(raw)
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return err
		}
		tw := c.table("NUMBER", "COUNTRY", "REGION", "TYPE", "FEATURES", "CREDITS/MONTH", "CARRIER")
		for _, n := range res.Numbers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", n.PhoneNumber, n.Country, n.Region, n.Type, feat(n.Features), n.MonthlyCost, n.Carrier)
		}
		tw.Flush()
		if res.NextPageToken != "" {
			fmt.Fprintf(c.out, "\nmore: --page-token %s\n", res.NextPageToken)
		}
		return nil
	case "numbers buy":
		if err := need(1, "NUMBER"); err != nil {
			return err
		}
		if !c.yes {
			cost, err := c.priceOf(pos[0], *carrierName, *integration, *country)
			if err != nil {
				return err
			}
			ok, err := c.confirm(fmt.Sprintf("Buy %s from %s for %s credits now? That is the full month charged at once; releasing later refunds nothing (no proration). [y/N] ", pos[0], *carrierName, cost))
			if err != nil || !ok {
				if err == nil {
					fmt.Fprintln(c.out, "not bought")
				}
				return err
			}
		}
		body := map[string]string{"phone_number": pos[0], "carrier": *carrierName}
		if *integration != "" {
			body["integration_id"] = *integration
		}
		hdr := map[string]string{}
		if *idem != "" {
			hdr["Idempotency-Key"] = *idem
		}
		return c.show("POST", "/v1/numbers", body, hdr)
	case "numbers list":
		var res struct {
			Numbers []numberView `json:"numbers"`
		}
		var raw json.RawMessage
		if err := c.do("GET", "/v1/numbers", nil, nil, &raw); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(raw)
		}
		_ = json.Unmarshal(raw, &res)
		tw := c.table("NUMBER", "STATUS", "AGENT", "CARRIER", "ORIGIN", "TYPE", "CREDITS/MONTH", "RENEWS")
		for _, n := range res.Numbers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", n.PhoneNumber, n.Status, dash(n.AgentID), n.Carrier, n.Origin, n.Type, n.MonthlyCost, dash(n.RenewsAt))
		}
		return tw.Flush()
	case "numbers show":
		if err := need(1, "NUMBER"); err != nil {
			return err
		}
		return c.show("GET", "/v1/numbers/"+url.PathEscape(pos[0]), nil, nil)
	case "numbers assign":
		if err := need(2, "NUMBER AGENT_ID (\"\" to unassign)"); err != nil {
			return err
		}
		body := map[string]any{"agent_id": pos[1]}
		if *region != "" {
			body["voice_region"] = *region
		}
		return c.show("PATCH", "/v1/numbers/"+url.PathEscape(pos[0]), body, nil)
	case "numbers release":
		if err := need(1, "NUMBER"); err != nil {
			return err
		}
		if !c.yes {
			ok, err := c.confirm(fmt.Sprintf("Release %s? No refund is given for the rest of the month. [y/N] ", pos[0]))
			if err != nil || !ok {
				return err
			}
		}
		if err := c.do("DELETE", "/v1/numbers/"+url.PathEscape(pos[0]), nil, nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(c.out, "released", pos[0])
		return nil
	case "agents create":
		if err := need(1, "ID"); err != nil {
			return err
		}
		var eps []map[string]string
		for _, e := range strings.Split(*endpoints, ",") {
			if e == "" {
				continue
			}
			r, u, ok := strings.Cut(e, "=")
			if !ok {
				return fmt.Errorf("--endpoint %q: want REGION=URI", e)
			}
			eps = append(eps, map[string]string{"region": r, "uri": u})
		}
		n := *name
		if n == "" {
			n = pos[0]
		}
		body := map[string]any{"id": pos[0], "name": n, "endpoints": eps}
		if *media != "" {
			body["media"] = *media
		}
		return c.show("POST", "/v1/agents", body, nil)
	case "agents list":
		var raw json.RawMessage
		if err := c.do("GET", "/v1/agents", nil, nil, &raw); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(raw)
		}
		var res struct {
			Agents []struct {
				ID, Name  string
				Endpoints []struct{ Region, URI string }
			}
		}
		_ = json.Unmarshal(raw, &res)
		tw := c.table("ID", "NAME", "ENDPOINTS")
		for _, a := range res.Agents {
			var eps []string
			for _, e := range a.Endpoints {
				eps = append(eps, e.Region+"="+e.URI)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", a.ID, a.Name, strings.Join(eps, " "))
		}
		return tw.Flush()
	case "agents delete":
		if err := need(1, "ID"); err != nil {
			return err
		}
		if err := c.do("DELETE", "/v1/agents/"+url.PathEscape(pos[0]), nil, nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(c.out, "deleted agent", pos[0])
		return nil
	case "forwarding add":
		if err := need(2, "BUSINESS_NUMBER GATEWAY_NUMBER"); err != nil {
			return err
		}
		return c.show("POST", "/v1/forwarding", map[string]string{"business_number": pos[0], "gateway_number": pos[1]}, nil)
	case "forwarding list":
		return c.show("GET", "/v1/forwarding", nil, nil)
	case "forwarding delete":
		if err := need(1, "BUSINESS_NUMBER"); err != nil {
			return err
		}
		return c.do("DELETE", "/v1/forwarding/"+url.PathEscape(pos[0]), nil, nil, nil)
	case "credits ":
		var raw json.RawMessage
		if err := c.do("GET", "/v1/credits", nil, nil, &raw); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(raw)
		}
		var res struct {
			Workspace string
			Balance   int64
			Entries   []struct {
				Time                 time.Time
				Kind, Number, Reason string
				Amount, Balance      int64
			}
		}
		_ = json.Unmarshal(raw, &res)
		fmt.Fprintf(c.out, "workspace %s: %d credits\n\n", res.Workspace, res.Balance)
		tw := c.table("TIME", "KIND", "AMOUNT", "BALANCE", "NUMBER", "REASON")
		for _, e := range res.Entries {
			fmt.Fprintf(tw, "%s\t%s\t%+d\t%d\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Kind, e.Amount, e.Balance, dash(e.Number), e.Reason)
		}
		return tw.Flush()
	case "credits topup":
		if err := need(2, "WORKSPACE AMOUNT"); err != nil {
			return err
		}
		amt, err := strconv.ParseInt(pos[1], 10, 64)
		if err != nil {
			return fmt.Errorf("AMOUNT %q is not an integer", pos[1])
		}
		return c.show("POST", "/v1/workspaces/"+url.PathEscape(pos[0])+"/credits", map[string]any{"amount": amt}, nil)
	case "workspaces create":
		if err := need(1, "ID"); err != nil {
			return err
		}
		return c.show("POST", "/v1/workspaces", map[string]any{"id": pos[0], "name": pos[0], "credits": *credits}, nil)
	case "regions ":
		return c.show("GET", "/v1/regions", nil, nil)
	}
	return fmt.Errorf("unknown command %q (see callgate --help)", strings.TrimSpace(group+" "+sub))
}

type numberView struct {
	PhoneNumber string `json:"phone_number"`
	Status      string `json:"status"`
	AgentID     string `json:"agent_id"`
	Carrier     string `json:"carrier"`
	Origin      string `json:"origin"`
	Type        string `json:"type"`
	MonthlyCost int64  `json:"monthly_cost"`
	RenewsAt    string `json:"renews_at"`
}

func (c *client) priceOf(number, carrierName, integration, country string) (string, error) {
	// The marketplace lists the price; a buy of a number not listed is
	// still attempted and the API decides.
	q := url.Values{"carrier": {carrierName}, "country": {country}, "limit": {"100"}}
	if integration != "" {
		q.Set("integration_id", integration)
	}
	digits := strings.TrimPrefix(number, "+")
	if strings.HasPrefix(digits, "1") && len(digits) == 11 {
		q.Set("area_code", digits[1:4])
	}
	var res struct {
		Numbers []struct {
			PhoneNumber string `json:"phone_number"`
			MonthlyCost int64  `json:"monthly_cost"`
		}
	}
	if err := c.do("GET", "/v1/marketplace/numbers?"+q.Encode(), nil, nil, &res); err == nil {
		for _, n := range res.Numbers {
			if n.PhoneNumber == number {
				return strconv.FormatInt(n.MonthlyCost, 10), nil
			}
		}
	}
	return "its monthly price in", nil
}

func (c *client) confirm(prompt string) (bool, error) {
	fmt.Fprint(c.out, prompt)
	line, err := bufio.NewReader(c.in).ReadString('\n')
	if err != nil && line == "" {
		return false, errors.New("no answer on stdin; pass --yes to skip the confirmation")
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}

func (c *client) show(method, path string, body any, hdr map[string]string) error {
	var raw json.RawMessage
	if err := c.do(method, path, body, hdr, &raw); err != nil {
		return err
	}
	if c.json || len(raw) == 0 {
		return c.printJSON(raw)
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return c.printJSON(raw)
	}
	tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		var s string
		switch x := v.(type) {
		case string:
			s = x
		default:
			b, _ := json.Marshal(x)
			s = string(b)
		}
		fmt.Fprintf(tw, "%s\t%s\n", k, s)
	}
	return tw.Flush()
}

func (c *client) printJSON(raw []byte) error {
	var buf bytes.Buffer
	if len(raw) == 0 {
		return nil
	}
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		_, err = c.out.Write(raw)
		return err
	}
	buf.WriteByte('\n')
	_, err := c.out.Write(buf.Bytes())
	return err
}

func (c *client) table(cols ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	return tw
}

func feat(m map[string]bool) string {
	var f []string
	for _, k := range []string{"voice", "sms", "mms"} {
		if m[k] {
			f = append(f, k)
		}
	}
	return strings.Join(f, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}
