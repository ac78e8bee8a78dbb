package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) numbersCommand() *cobra.Command {
	return a.group("numbers", "Search, buy, list, show, assign and release numbers",
		a.numbersSearch(), a.numbersBuy(), a.numbersList(), a.numbersShow(), a.numbersAssign(), a.numbersRelease(),
		a.numbersSet())
}

func (a *app) numbersSearch() *cobra.Command {
	var country, areaCode, typ, features, pageToken, carrierName, integration string
	var limit int
	c := &cobra.Command{
		Use:   "search",
		Short: "Search a carrier's inventory",
		Args:  noArgs,
	}
	f := c.Flags()
	f.StringVar(&country, "country", "US", "ISO country code")
	f.StringVar(&areaCode, "area-code", "", "area code")
	f.StringVar(&typ, "type", "", "local, mobile, toll_free, national")
	f.StringVar(&features, "features", "", "voice,sms,mms")
	f.IntVar(&limit, "limit", 20, "results per page (1-100)")
	f.StringVar(&pageToken, "page-token", "", "next page token (from a previous search)")
	f.StringVar(&carrierName, "carrier", "sandbox", "sandbox, twilio, telnyx")
	f.StringVar(&integration, "integration", "", "integration id (twilio, telnyx)")
	completeWords(c, "type", "local", "mobile", "toll_free", "national")
	completeWords(c, "carrier", "sandbox", "twilio", "telnyx")
	c.RunE = a.runE(false, func(args []string) error {
		q := url.Values{"country": {country}, "carrier": {carrierName}, "limit": {strconv.Itoa(limit)}}
		for k, v := range map[string]string{"area_code": areaCode, "type": typ, "features": features, "page_token": pageToken, "integration_id": integration} {
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
		if done, err := a.get("/v1/marketplace/numbers?"+q.Encode(), &res); done || err != nil {
			return err
		}
		tw := a.table("NUMBER", "COUNTRY", "REGION", "TYPE", "FEATURES", "CREDITS/MONTH", "CARRIER")
		for _, n := range res.Numbers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", n.PhoneNumber, n.Country, n.Region, n.Type, feat(n.Features), n.MonthlyCost, n.Carrier)
		}
		tw.Flush()
		if res.NextPageToken != "" {
			fmt.Fprintf(a.out, "\nmore: --page-token %s\n", res.NextPageToken)
		}
		return nil
	})
	return c
}

func (a *app) numbersBuy() *cobra.Command {
	var country, carrierName, integration, agent, idem string
	var yes bool
	c := &cobra.Command{
		Use:   "buy NUMBER",
		Short: "Buy a number (the full month is charged at once, no proration)",
		Args:  exactArgs("NUMBER"),
	}
	f := c.Flags()
	f.StringVar(&carrierName, "carrier", "sandbox", "sandbox, twilio, telnyx")
	f.StringVar(&integration, "integration", "", "integration id (twilio, telnyx)")
	f.StringVar(&agent, "agent", "", "assign the number to this agent")
	f.StringVar(&idem, "idempotency-key", "", "Idempotency-Key: a retry with the same key buys and charges once")
	countryFlag(c, &country)
	yesFlag(c, &yes)
	completeWords(c, "carrier", "sandbox", "twilio", "telnyx")
	c.RunE = a.runE(false, func(args []string) error {
		num, err := a.number(args[0], country)
		if err != nil {
			return err
		}
		if !yes {
			cost := a.priceOf(num, carrierName, integration, country)
			ok, err := a.confirm(fmt.Sprintf("Buy %s from %s for %s credits now? That is the full month charged at once; releasing later refunds nothing (no proration). [y/N] ", num, carrierName, cost))
			if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintln(a.errOut, "not bought")
				return nil
			}
		}
		body := map[string]string{"phone_number": num, "carrier": carrierName}
		if integration != "" {
			body["integration_id"] = integration
		}
		if agent != "" {
			body["agent_id"] = agent
		}
		hdr := map[string]string{}
		if idem != "" {
			hdr["Idempotency-Key"] = idem
		}
		return a.show("POST", "/v1/numbers", body, hdr)
	})
	return c
}

// priceOf looks the number up in the marketplace for the confirmation; a
// buy of a number not listed is still attempted and the API decides.
func (a *app) priceOf(e164, carrierName, integration, country string) string {
	q := url.Values{"carrier": {carrierName}, "country": {country}, "limit": {"100"}}
	if integration != "" {
		q.Set("integration_id", integration)
	}
	digits := strings.TrimPrefix(e164, "+")
	if strings.HasPrefix(digits, "1") && len(digits) == 11 {
		q.Set("area_code", digits[1:4])
	}
	var res struct {
		Numbers []struct {
			PhoneNumber string `json:"phone_number"`
			MonthlyCost int64  `json:"monthly_cost"`
		}
	}
	if err := a.do("GET", "/v1/marketplace/numbers?"+q.Encode(), nil, nil, &res); err == nil {
		for _, n := range res.Numbers {
			if n.PhoneNumber == e164 {
				return strconv.FormatInt(n.MonthlyCost, 10)
			}
		}
	}
	return "its monthly price in"
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

func (a *app) numbersList() *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List the workspace's numbers",
		Args:  noArgs,
	}
	c.RunE = a.runE(false, func(args []string) error {
		var res struct {
			Numbers []numberView `json:"numbers"`
		}
		if done, err := a.get("/v1/numbers", &res); done || err != nil {
			return err
		}
		tw := a.table("NUMBER", "STATUS", "AGENT", "CARRIER", "ORIGIN", "TYPE", "CREDITS/MONTH", "RENEWS")
		for _, n := range res.Numbers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", n.PhoneNumber, n.Status, dash(n.AgentID), n.Carrier, n.Origin, n.Type, n.MonthlyCost, dash(n.RenewsAt))
		}
		return tw.Flush()
	})
	return c
}

func (a *app) numbersShow() *cobra.Command {
	var country string
	c := &cobra.Command{
		Use:   "show NUMBER",
		Short: "Show a number",
		Args:  exactArgs("NUMBER"),
	}
	countryFlag(c, &country)
	c.RunE = a.runE(false, func(args []string) error {
		num, err := a.number(args[0], country)
		if err != nil {
			return err
		}
		return a.show("GET", "/v1/numbers/"+url.PathEscape(num), nil, nil)
	})
	return c
}

func (a *app) numbersAssign() *cobra.Command {
	var country, region string
	c := &cobra.Command{
		Use:   "assign NUMBER AGENT_ID",
		Short: `Assign a number to an agent ("" to unassign) and/or set its voice region`,
		Args:  exactArgs("NUMBER", `AGENT_ID ("" to unassign)`),
	}
	c.Flags().StringVar(&region, "region", "", "voice region (Twilio numbers: us1, ie1, au1)")
	countryFlag(c, &country)
	c.RunE = a.runE(false, func(args []string) error {
		num, err := a.number(args[0], country)
		if err != nil {
			return err
		}
		body := map[string]any{"agent_id": args[1]}
		if region != "" {
			body["voice_region"] = region
		}
		return a.show("PATCH", "/v1/numbers/"+url.PathEscape(num), body, nil)
	})
	return c
}

func (a *app) numbersRelease() *cobra.Command {
	var country string
	var yes bool
	c := &cobra.Command{
		Use:   "release NUMBER",
		Short: "Release a number (no refund; it returns to inventory)",
		Args:  exactArgs("NUMBER"),
	}
	countryFlag(c, &country)
	yesFlag(c, &yes)
	c.RunE = a.runE(false, func(args []string) error {
		num, err := a.number(args[0], country)
		if err != nil {
			return err
		}
		if !yes {
			ok, err := a.confirm(fmt.Sprintf("Release %s? No refund is given for the rest of the month. [y/N] ", num))
			if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintln(a.errOut, "not released")
				return nil
			}
		}
		if err := a.do("DELETE", "/v1/numbers/"+url.PathEscape(num), nil, nil, nil); err != nil {
			return err
		}
		a.note("released %s", num)
		return nil
	})
	return c
}
