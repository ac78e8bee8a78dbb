package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/phone"
)

// Exit codes, by class of failure (README: "Exit codes").
const (
	exitOK       = 0
	exitError    = 1 // anything else: authentication, carrier refused credentials, partial import
	exitUsage    = 2 // bad command, flag or argument, or the API refused the request as invalid (400)
	exitNotFound = 3 // 404
	exitConflict = 4 // 409 conflict, 402 insufficient credits
	exitServer   = 5 // 5xx, or the API could not be reached
)

// exitCodeFor maps an API status to an exit code.
func exitCodeFor(status int) int {
	switch {
	case status == http.StatusBadRequest:
		return exitUsage
	case status == http.StatusNotFound:
		return exitNotFound
	case status == http.StatusConflict, status == http.StatusPaymentRequired:
		return exitConflict
	case status >= 500:
		return exitServer
	default:
		return exitError
	}
}

// cliError is an error with its exit code. problem, when set, is the
// API's problem+json body, printed as is under --json.
type cliError struct {
	code    int
	title   string // problem title for errors that did not come from the API
	msg     string
	problem []byte
	silent  bool // already reported (help printed): only the exit code
}

func (e *cliError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &cliError{code: exitUsage, title: "Usage error", msg: fmt.Sprintf(format, args...)}
}

// app is one run of the CLI: global flags, streams and the numbers the
// user typed.
type app struct {
	api, key, dataDir string
	json              bool
	in                *bufio.Reader
	out, errOut       io.Writer
	http              *http.Client
	admin             bool // the command needs the admin key
	// typed maps the E.164 form of a number to how the user wrote it, for
	// numbers written without '+': messages show the user's spelling.
	typed map[string]string
}

// run executes the CLI with args (without the program name) and returns
// the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{
		in: bufio.NewReader(stdin), out: stdout, errOut: stderr,
		http:  &http.Client{Timeout: 60 * time.Second},
		typed: map[string]string{},
	}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	return a.report(cmd, err, a.json || jsonFlag(args))
}

// jsonFlag finds --json in args when flag parsing failed before setting it.
func jsonFlag(args []string) bool {
	for _, s := range args {
		if s == "--" {
			return false
		}
		if s == "--json" || s == "--json=true" {
			return true
		}
	}
	return false
}

// report prints err (problem+json under --json) on stderr and returns its exit code.
func (a *app) report(cmd *cobra.Command, err error, asJSON bool) int {
	var ce *cliError
	if !errors.As(err, &ce) {
		// Errors that did not come from a command's RunE are cobra's:
		// unknown command or flag, wrong number of arguments.
		ce = &cliError{code: exitUsage, title: "Usage error", msg: err.Error()}
	}
	if ce.silent {
		return ce.code
	}
	if asJSON {
		if len(ce.problem) > 0 {
			a.errOut.Write(bytes.TrimSpace(ce.problem))
			fmt.Fprintln(a.errOut)
			return ce.code
		}
		p := map[string]any{"type": "about:blank", "title": ce.title, "detail": a.spelled(ce.msg)}
		switch ce.code {
		case exitUsage:
			p["type"] = "urn:callgate:cli:usage"
		case exitServer:
			p["type"] = "urn:callgate:cli:unreachable"
		}
		if ce.title == "" {
			p["title"] = "Error"
		}
		b, _ := json.Marshal(p)
		fmt.Fprintf(a.errOut, "%s\n", b)
		return ce.code
	}
	fmt.Fprintln(a.errOut, "callgate:", a.spelled(ce.msg))
	if ce.code == exitUsage && len(ce.problem) == 0 && cmd != nil {
		fmt.Fprintf(a.errOut, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return ce.code
}

const rootLong = `callgate: telephony edge gateway for voice-AI agents

'callgate serve' runs the gateway; the other commands are its operator CLI
and talk to the HTTP API: --api URL (default http://127.0.0.1:8080, env
CALLGATE_API), --key KEY (env CALLGATE_API_KEY, else the data dir's api-key
file, or admin-key for admin commands; --data-dir or CALLGATE_DATA_DIR),
--json for scripts. Global flags go anywhere on the command line.

Exit codes: 0 ok, 1 other error, 2 usage (bad command, flag or argument;
the API refused the request as invalid), 3 not found, 4 conflict or
insufficient credits, 5 server error or API unreachable.`

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "callgate",
		Short:         "telephony edge gateway for voice-AI agents",
		Long:          rootLong,
		Version:       node.Version,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprint(a.errOut, cmd.UsageString())
			return &cliError{code: exitUsage, silent: true}
		},
	}
	root.SetVersionTemplate("callgate {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&a.api, "api", envOr("CALLGATE_API", "http://127.0.0.1:8080"), "API base URL (env CALLGATE_API)")
	pf.StringVar(&a.key, "key", os.Getenv("CALLGATE_API_KEY"), "API key (env CALLGATE_API_KEY; default: <data-dir>/api-key, or admin-key for admin commands)")
	pf.StringVar(&a.dataDir, "data-dir", envOr("CALLGATE_DATA_DIR", "./data"), "data dir holding api-key and admin-key (env CALLGATE_DATA_DIR)")
	pf.BoolVar(&a.json, "json", false, "print JSON (errors as problem+json on stderr)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErrorf("%v", err)
	})
	root.AddGroup(&cobra.Group{ID: "gateway", Title: "Gateway:"}, &cobra.Group{ID: "ops", Title: "Operator commands (talk to the API):"})
	for _, c := range []*cobra.Command{a.serveCommand(), a.devCommand()} {
		c.GroupID = "gateway"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{
		a.numbersCommand(), a.agentsCommand(), a.forwardingCommand(), a.integrationsCommand(),
		a.creditsCommand(), a.workspacesCommand(), a.regionsCommand(), a.auditCommand(),
		a.callsCommand(),
		a.workspaceCommand(),
	} {
		c.GroupID = "ops"
		root.AddCommand(c)
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(a.out, versionString())
			return nil
		},
	})
	return root
}

// serve and dev parse their own flags (config help comes from config/).
func (a *app) serveCommand() *cobra.Command {
	c := &cobra.Command{
		Use:                "serve [--config FILE] [--check]",
		Short:              "Run the gateway (see: callgate serve --help)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return asError(serve(args))
		},
	}
	// `callgate help serve` shows serve's own help (its settings).
	c.SetHelpFunc(func(*cobra.Command, []string) { _ = serve([]string{"--help"}) })
	return c
}

func (a *app) devCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "dev fake-carrier|agent|call ...",
		Short:              "Developer tools: carrier API simulators, a demo voice agent, a test caller",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return asError(dev(args))
		},
	}
}

// asError gives an error from a command's own code exit code 1 unless it
// already has one.
func asError(err error) error {
	if err == nil {
		return nil
	}
	var ce *cliError
	if errors.As(err, &ce) {
		return err
	}
	return &cliError{code: exitError, msg: err.Error()}
}

// group is a command that only holds subcommands.
func (a *app) group(use, short string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			fmt.Fprint(a.errOut, cmd.UsageString())
			return &cliError{code: exitUsage, silent: true}
		},
	}
	g.AddCommand(subs...)
	return g
}

func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageErrorf("%s", msg)
}

// Argument checks: usage errors naming what is missing.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments (got %q)", cmd.CommandPath(), args[0])
	}
	return nil
}

func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < len(names) {
			return usageErrorf("%s: missing %s", cmd.CommandPath(), strings.Join(names[len(args):], " "))
		}
		if len(args) > len(names) {
			return usageErrorf("%s: unexpected argument %q", cmd.CommandPath(), args[len(names)])
		}
		return nil
	}
}

// runE wraps a command's body: the client is set up (key loaded) first,
// and errors without an exit code get 1.
func (a *app) runE(admin bool, fn func(args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.admin = admin
		if err := a.loadKey(); err != nil {
			return err
		}
		return asError(fn(args))
	}
}

func (a *app) loadKey() error {
	if a.key != "" {
		return nil
	}
	f := "api-key"
	if a.admin {
		f = "admin-key"
	}
	p := filepath.Join(a.dataDir, f)
	b, err := os.ReadFile(p)
	if err != nil {
		return usageErrorf("no API key: pass --key, set CALLGATE_API_KEY, or run next to the data dir (%s: %v)", p, err)
	}
	a.key = strings.TrimSpace(string(b))
	return nil
}

// apiProblem is the part of the API's problem+json the CLI reads.
type apiProblem struct {
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Errors []struct {
		Field, Message string
	} `json:"errors"`
}

func (p *apiProblem) message() string {
	s := fmt.Sprintf("%d %s", p.Status, p.Title)
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	return s
}

// do sends one API request; out receives the JSON body (a
// *json.RawMessage receives it as is).
func (a *app) do(method, path string, body any, hdr map[string]string, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimRight(a.api, "/")+path, rd)
	if err != nil {
		return usageErrorf("--api %q: %v", a.api, err)
	}
	if a.key != "" {
		req.Header.Set("Authorization", "Bearer "+a.key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return &cliError{code: exitServer, title: "API unreachable",
			msg: fmt.Sprintf("cannot reach the callgate API at %s: %v (is `callgate serve` running? set --api)", a.api, err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return &cliError{code: exitServer, title: "API unreachable", msg: fmt.Sprintf("reading the API's answer: %v", err)}
	}
	if resp.StatusCode >= 400 {
		var p apiProblem
		if json.Unmarshal(b, &p) == nil && p.Status != 0 {
			return &cliError{code: exitCodeFor(resp.StatusCode), msg: p.message(), problem: b}
		}
		// Not a problem document (a proxy in between?): make one.
		pb, _ := json.Marshal(map[string]any{"type": "about:blank", "title": http.StatusText(resp.StatusCode),
			"status": resp.StatusCode, "detail": method + " " + path + ": " + resp.Status})
		return &cliError{code: exitCodeFor(resp.StatusCode), msg: fmt.Sprintf("%s %s: %s", method, path, resp.Status), problem: pb}
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

// get fetches path; under --json it prints the body and returns done.
func (a *app) get(path string, v any) (done bool, err error) {
	var raw json.RawMessage
	if err := a.do("GET", path, nil, nil, &raw); err != nil {
		return false, err
	}
	if a.json {
		return true, a.printJSON(raw)
	}
	return false, json.Unmarshal(raw, v)
}

// number parses a number the user typed with the parser the API uses
// (phone.Normalize). Numbers without a country code are read in country.
func (a *app) number(raw, country string) (string, error) {
	e164, err := phone.Normalize(raw, country)
	if err != nil {
		why := strings.TrimPrefix(err.Error(), phone.ErrInvalid.Error()+": ")
		hint := "write it with its country code"
		if country != "" {
			hint = fmt.Sprintf("numbers without a country code are read as %s numbers (--country); write others with their country code", strings.ToUpper(country))
		}
		if strings.HasSuffix(why, "is not a valid number") {
			why = fmt.Sprintf("%q is not a valid phone number", raw)
		} else {
			why = "not a valid phone number: " + why
		}
		return "", usageErrorf("%s; %s", why, hint)
	}
	if !strings.Contains(raw, "+") {
		a.typed[e164] = raw
	}
	return e164, nil
}

// spelled replaces, in s, the E.164 form of each number the user typed
// without '+' by what the user typed.
func (a *app) spelled(s string) string {
	for e164, raw := range a.typed {
		var b strings.Builder
		for {
			i := strings.Index(s, e164)
			if i < 0 {
				b.WriteString(s)
				break
			}
			end := i + len(e164)
			if end < len(s) && s[end] >= '0' && s[end] <= '9' {
				b.WriteString(s[:end])
			} else {
				b.WriteString(s[:i])
				b.WriteString(raw)
			}
			s = s[end:]
		}
		s = b.String()
	}
	return s
}

// note prints a status line: on stdout, or on stderr under --json (stdout
// then holds only JSON).
func (a *app) note(format string, args ...any) {
	w := a.out
	if a.json {
		w = a.errOut
	}
	fmt.Fprintln(w, a.spelled(fmt.Sprintf(format, args...)))
}

// confirm asks on stderr and reads the answer from stdin.
func (a *app) confirm(prompt string) (bool, error) {
	fmt.Fprint(a.errOut, a.spelled(prompt))
	line, err := a.in.ReadString('\n')
	if err != nil && line == "" {
		return false, usageErrorf("no answer on stdin; pass --yes to skip the confirmation")
	}
	ans := strings.ToLower(strings.TrimSpace(line))
	return ans == "y" || ans == "yes", nil
}

// show sends a request and prints the object it returns as KEY VALUE lines
// (JSON under --json).
func (a *app) show(method, path string, body any, hdr map[string]string) error {
	var raw json.RawMessage
	if err := a.do(method, path, body, hdr, &raw); err != nil {
		return err
	}
	if a.json || len(raw) == 0 {
		return a.printJSON(raw)
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return a.printJSON(raw)
	}
	tw := tabwriter.NewWriter(a.out, 2, 4, 2, ' ', 0)
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

func (a *app) printJSON(raw []byte) error {
	var buf bytes.Buffer
	if len(raw) == 0 {
		return nil
	}
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		_, err = a.out.Write(raw)
		return err
	}
	buf.WriteByte('\n')
	_, err := a.out.Write(buf.Bytes())
	return err
}

func (a *app) table(cols ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(a.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	return tw
}

// yesFlag adds -y/--yes.
func yesFlag(c *cobra.Command, yes *bool) {
	c.Flags().BoolVarP(yes, "yes", "y", false, "do not ask for confirmation")
}

// countryFlag adds --country, the country of numbers written without
// their country code.
func countryFlag(c *cobra.Command, country *string) {
	c.Flags().StringVar(country, "country", "US", "ISO country of numbers written without their country code")
}

// completeWords completes a flag with a fixed list.
func completeWords(c *cobra.Command, flag string, words ...string) {
	_ = c.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp))
}

func changed(c *cobra.Command, name string) bool {
	f := c.Flags().Lookup(name)
	return f != nil && f.Changed
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
