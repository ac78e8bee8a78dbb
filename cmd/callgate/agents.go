package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) agentsCommand() *cobra.Command {
	return a.group("agents", "Create, list, show, update and delete agents",
		a.agentsCreate(), a.agentsList(), a.agentsShow(), a.agentsUpdate(), a.agentsDelete(),
		a.agentsCredentials())
}

type endpoint struct {
	Region string `json:"region"`
	URI    string `json:"uri"`
}

// parseEndpoints reads --endpoint values: REGION=URI, several joined by
// commas or the flag repeated.
func parseEndpoints(vals []string) ([]endpoint, error) {
	eps := []endpoint{}
	for _, v := range vals {
		for _, e := range strings.Split(v, ",") {
			if e == "" {
				continue
			}
			r, u, ok := strings.Cut(e, "=")
			if !ok {
				return nil, usageErrorf("--endpoint %q: want REGION=URI", e)
			}
			eps = append(eps, endpoint{Region: r, URI: u})
		}
	}
	return eps, nil
}

// agentFlags are the fields of an agent given on the command line.
type agentFlags struct {
	name, media, messagingURL string
	endpoints                 []string
	sourceCIDRs               []string
}

func (f *agentFlags) add(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.name, "name", "", "display name")
	fl.StringArrayVar(&f.endpoints, "endpoint", nil, "REGION=URI (repeat the flag or join with commas)")
	fl.StringVar(&f.media, "media", "", "direct or relay")
	fl.StringVar(&f.messagingURL, "messaging-url", "", "URL that receives the agent's SMS")
	fl.StringSliceVar(&f.sourceCIDRs, "source-cidr", nil, "ranges the agent's SIP credentials are accepted from (repeat or join with commas)")
	completeWords(c, "media", "direct", "relay")
}

func (a *app) agentsCreate() *cobra.Command {
	var f agentFlags
	c := &cobra.Command{
		Use:   "create ID",
		Short: "Create an agent",
		Args:  exactArgs("ID"),
	}
	f.add(c)
	c.RunE = a.runE(false, func(args []string) error {
		eps, err := parseEndpoints(f.endpoints)
		if err != nil {
			return err
		}
		name := f.name
		if name == "" {
			name = args[0]
		}
		body := map[string]any{"id": args[0], "name": name, "endpoints": eps}
		if f.media != "" {
			body["media"] = f.media
		}
		if f.messagingURL != "" {
			body["messaging_url"] = f.messagingURL
		}
		if len(f.sourceCIDRs) > 0 {
			body["source_cidrs"] = f.sourceCIDRs
		}
		return a.show("POST", "/v1/agents", body, nil)
	})
	return c
}

func (a *app) agentsList() *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List agents",
		Args:  noArgs,
	}
	c.RunE = a.runE(false, func(args []string) error {
		var res struct {
			Agents []struct {
				ID, Name  string
				Endpoints []endpoint
			}
		}
		if done, err := a.get("/v1/agents", &res); done || err != nil {
			return err
		}
		tw := a.table("ID", "NAME", "ENDPOINTS")
		for _, ag := range res.Agents {
			var eps []string
			for _, e := range ag.Endpoints {
				eps = append(eps, e.Region+"="+e.URI)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", ag.ID, ag.Name, strings.Join(eps, " "))
		}
		return tw.Flush()
	})
	return c
}

func (a *app) agentsShow() *cobra.Command {
	c := &cobra.Command{
		Use:   "show ID",
		Short: "Show an agent",
		Args:  exactArgs("ID"),
	}
	c.RunE = a.runE(false, func(args []string) error {
		return a.show("GET", "/v1/agents/"+url.PathEscape(args[0]), nil, nil)
	})
	return c
}

func (a *app) agentsUpdate() *cobra.Command {
	var f agentFlags
	c := &cobra.Command{
		Use:   "update ID",
		Short: "Change an agent: the fields given by flags; the others are kept",
		Long: "Change an agent: the fields given by flags are replaced (--endpoint replaces\n" +
			"the whole list; --media \"\" and --messaging-url \"\" clear them); the others are kept.",
		Args: exactArgs("ID"),
	}
	f.add(c)
	c.RunE = a.runE(false, func(args []string) error {
		if !changed(c, "name") && !changed(c, "endpoint") && !changed(c, "media") && !changed(c, "messaging-url") && !changed(c, "source-cidr") {
			return usageErrorf("agents update: nothing to change: give --name, --endpoint, --media or --messaging-url")
		}
		path := "/v1/agents/" + url.PathEscape(args[0])
		var cur struct {
			Name         string     `json:"name"`
			Endpoints    []endpoint `json:"endpoints"`
			Media        string     `json:"media"`
			MessagingURL string     `json:"messaging_url"`
			SourceCIDRs  []string   `json:"source_cidrs"`
		}
		if err := a.do("GET", path, nil, nil, &cur); err != nil {
			return err
		}
		body := map[string]any{"id": args[0], "name": cur.Name, "endpoints": cur.Endpoints}
		if cur.Endpoints == nil {
			body["endpoints"] = []endpoint{}
		}
		media, msgURL := cur.Media, cur.MessagingURL
		if changed(c, "name") {
			body["name"] = f.name
		}
		if changed(c, "endpoint") {
			eps, err := parseEndpoints(f.endpoints)
			if err != nil {
				return err
			}
			body["endpoints"] = eps
		}
		if changed(c, "media") {
			media = f.media
		}
		if changed(c, "messaging-url") {
			msgURL = f.messagingURL
		}
		if media != "" {
			body["media"] = media
		}
		if msgURL != "" {
			body["messaging_url"] = msgURL
		}
		// PUT replaces: keep the source ranges unless --source-cidr is given.
		body["source_cidrs"] = cur.SourceCIDRs
		if changed(c, "source-cidr") {
			body["source_cidrs"] = f.sourceCIDRs
		}
		return a.show("PUT", path, body, nil)
	})
	return c
}

func (a *app) agentsDelete() *cobra.Command {
	c := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete an agent (refused while numbers are assigned to it)",
		Args:  exactArgs("ID"),
	}
	c.RunE = a.runE(false, func(args []string) error {
		if err := a.do("DELETE", "/v1/agents/"+url.PathEscape(args[0]), nil, nil, nil); err != nil {
			return err
		}
		a.note("deleted agent %s", args[0])
		return nil
	})
	return c
}
