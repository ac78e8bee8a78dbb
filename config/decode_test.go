package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// wantProblems loads body and checks that the error holds every line of
// want, in any order; "FILE" stands for the file's path.
func wantProblems(t *testing.T, body string, env map[string]string, want ...string) error {
	t.Helper()
	p := write(t, body)
	_, err := Load(p, func(k string) string { return env[k] })
	if err == nil {
		t.Fatalf("config accepted:\n%s", body)
	}
	for _, w := range want {
		w = strings.ReplaceAll(w, "FILE", p)
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
	return err
}

// A value of the wrong type names the file, its line and its key (yaml.v3
// alone says "line 3: cannot unmarshal !!str `abc` into int").
func TestTypeErrorNamesKeyAndLine(t *testing.T) {
	wantProblems(t, "http_addr: 127.0.0.1:0\nnats:\n  replicas: abc\nsip:\n  ring_timeout: 30\n  silent_reject: sometimes\n  probe:\n    alpha: high\nlog: [text]\n", nil,
		`FILE:3: nats.replicas: "abc" is not an integer`,
		`FILE:5: sip.ring_timeout: "30" is not a duration (e.g. 30s, 1m)`,
		`FILE:6: sip.silent_reject: "sometimes" is not true or false`,
		`FILE:8: sip.probe.alpha: "high" is not a number`,
		`FILE:9: log: expected a mapping of keys, got a list`,
		"5 problem(s)",
	)
}

// A type error does not hide the validation errors (before, decoding
// stopped at the first and nothing was validated).
func TestDecodeAndValidationErrorsTogether(t *testing.T) {
	err := wantProblems(t, "http_addr: nope\nnats:\n  replicas: many\n  urll: nats://x\nmedia:\n  workers: 999\n", nil,
		`FILE:1: http_addr: "nope" is not host:port`,
		`FILE:3: nats.replicas: "many" is not an integer`,
		`FILE:4: nats.urll: unknown key "urll"`,
		`FILE:6: media.workers: 999 is outside 0-256`,
		"4 problem(s)",
	)
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 4 {
		t.Fatalf("want a *config.Error with 4 problems, got %#v", err)
	}
	if p := ce.Problems[1]; p.Line != 3 || p.Path != "nats.replicas" || !strings.HasSuffix(p.File, "callgate.yaml") {
		t.Errorf("problem not placed: %+v", p)
	}
}

// Keys inside lists are named by index, with the line of the element.
func TestNestedPathWithLine(t *testing.T) {
	body := `sip:
  trunks:
    - name: twilio
      preset: twilio
    - name: lab
      cidrs:
        - 10.0.0.0/8
        - 10.1.2.300/32
      countyr: US
    - name: lab
      cidrs: [192.0.2.1, {a: b}]
      username: u
`
	wantProblems(t, body, nil,
		`FILE:8: sip.trunks[1].cidrs[1]: "10.1.2.300/32" is not a CIDR`,
		`FILE:9: sip.trunks[1].countyr: unknown key "countyr" (did you mean country?)`,
		`FILE:11: sip.trunks[2].cidrs[1]: expected a string, got a mapping`,
		`FILE:10: sip.trunks[2].password: username and password must be set together`, // not in the file: placed at its trunk
		`FILE:10: sip.trunks[2].name: duplicate trunk "lab"`,
	)
	wantProblems(t, "sip:\n  trunks:\n    - name: a\n      cidrs: [127.0.0.1, nonsense]\n", nil,
		`FILE:4: sip.trunks[0].cidrs[1]: "nonsense" is not an IP or CIDR`)
}

// A problem with a key that is not in the file is placed at its closest
// section in the file (sip: on line 2), or has no place when it comes from the defaults;
// one set by the environment names the variable instead of the file.
func TestProblemPlaces(t *testing.T) {
	err := wantProblems(t, "region: eu-west\nsip:\n  tls_cert: c.pem\n", map[string]string{"CALLGATE_HTTP_ADDR": "nope"},
		`FILE:2: sip.tls_addr: tls_addr, tls_cert and tls_key must be set together`,
		`CALLGATE_HTTP_ADDR (http_addr): "nope" is not host:port`,
	)
	if strings.Contains(err.Error(), ": CALLGATE_HTTP_ADDR") {
		t.Errorf("an environment problem is placed in the file: %v", err)
	}
	// The environment wins over the file, so it is what the problem names.
	wantProblems(t, "http_addr: 127.0.0.1:0\n", map[string]string{"CALLGATE_HTTP_ADDR": "nope"},
		`config: 1 problem(s):`+"\n  "+`CALLGATE_HTTP_ADDR (http_addr): "nope" is not host:port`)
	// Webhook's own "webhook: key:" messages get the same path form.
	wantProblems(t, "public_url: https://gw.example.com\nwebhook:\n  messaging:\n    attempts: 50\n", nil,
		`FILE:4: webhook.messaging.attempts: 50 is outside 0..10`)
}

// A file of comments only is the defaults.
func TestCommentsOnly(t *testing.T) {
	c, err := Load(write(t, "# nothing set yet\n"), noEnv)
	if err != nil || !reflect.DeepEqual(c, mustLoad(t, "")) {
		t.Fatalf("comments only: %v", err)
	}
}

func mustLoad(t *testing.T, path string) Config {
	t.Helper()
	c, err := Load(path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSyntaxAndDuplicateKeys(t *testing.T) {
	wantProblems(t, "http_addr: 127.0.0.1:0\nnats:\n\turl: x\n", nil, "FILE:3: found character that cannot start any token")
	wantProblems(t, "region: a\nnats:\n  url: nats://a\n  url: nats://b\n", nil,
		`FILE:4: nats.url: key already set on line 3`)
}

// The node walk decodes exactly what yaml.v3's strict decoder decodes for
// valid files: anchors, merge keys, nulls, flow style, lists replacing
// the default list, maps, and the shipped deployment configs.
func TestDecodeMatchesYAML(t *testing.T) {
	docs := map[string]string{
		"anchors and merge": `
region: eu-west
sip:
  probe: &probe
    interval: 10s
    timeout: 1s
  trunks:
    - &lab {name: lab, carrier: local, cidrs: [127.0.0.0/8], country: GB}
    - <<: *lab
      name: lab2
      cidrs: ["::1"]
webhook:
  twilio:
    edges: {eu-west: dublin, us-east: ashburn}
    ring_timeout: 45s
  messaging:
    allow_networks: [10.0.0.0/8]
media:
  mode: relay
  port_min: 20000
  port_max: 20100
  regions: [a, b]
`,
		"nulls":            "sip:\nwebhook:\nmedia:\n  regions:\nlog:\n  level:\n",
		"empty trunk list": "sip:\n  trunks: []\n  workers: 2\n",
		"quoted and typed": "sandbox: off\nregion: '7'\nbootstrap:\n  credits: 0x10\nsip:\n  retry_after: !!int \"7\"\n  probe:\n    alpha: 1\n",
	}
	for _, f := range []string{"us-east.yaml", "eu-west.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "deploy", "callgate", f))
		if err != nil {
			t.Fatal(err)
		}
		docs[f] = string(b)
	}
	for name, doc := range docs {
		ours := Default()
		_, probs, ok := decode([]byte(doc), name, &ours)
		theirs := Default()
		dec := yaml.NewDecoder(strings.NewReader(doc))
		dec.KnownFields(true)
		err := dec.Decode(&theirs)
		if !ok || len(probs) > 0 || err != nil {
			t.Errorf("%s: ours %v, yaml.v3 %v", name, probs, err)
			continue
		}
		if !reflect.DeepEqual(ours, theirs) {
			t.Errorf("%s: decoded differently:\nours   %+v\nyaml.v3 %+v", name, ours, theirs)
		}
	}
}
