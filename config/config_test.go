package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "callgate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func noEnv(string) string { return "" }

func TestDefaultsValid(t *testing.T) {
	c, err := Load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:8080" || c.DataDir != "./data" || !c.Sandbox || c.NATS.URL != "" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestUnknownKeyNamesLine(t *testing.T) {
	p := write(t, "http_addr: 127.0.0.1:9000\nnats:\n  ur1: nats://x\n")
	_, err := Load(p, noEnv)
	if err == nil || !strings.Contains(err.Error(), p+":3: nats.ur1:") {
		t.Fatalf("want an error naming file:3 and nats.ur1, got %v", err)
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	p := write(t, "http_addr: nope\nlog:\n  format: xml\nnats:\n  replicas: 9\npublic_url: ftp://x\n")
	_, err := Load(p, noEnv)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, key := range []string{"http_addr", "log.format", "nats.replicas", "public_url"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	p := write(t, "http_addr: 127.0.0.1:9000\ndata_dir: /tmp/a\n")
	env := map[string]string{
		"CALLGATE_DATA_DIR":        "/tmp/b",
		"CALLGATE_HTTP_ADDR":       "127.0.0.1:0",
		"CALLGATE_NATS_URL":        "nats://127.0.0.1:4222",
		"CALLGATE_TWILIO_API_BASE": "http://127.0.0.1:9999",
	}
	c, err := Load(p, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/tmp/b" || c.HTTPAddr != "127.0.0.1:0" || c.NATS.URL != "nats://127.0.0.1:4222" || c.Carriers.Twilio.APIBase != "http://127.0.0.1:9999" {
		t.Fatalf("env not applied: %+v", c)
	}
	if _, err := Load("", func(k string) string {
		if k == "CALLGATE_SANDBOX" {
			return "maybe"
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), "CALLGATE_SANDBOX") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestEverySettingDocumented(t *testing.T) {
	keys := map[string]bool{}
	for _, s := range Settings() {
		if s.Help == "" {
			t.Errorf("%s has no help", s.Key)
		}
		keys[s.Key] = true
	}
	for _, k := range []string{"data_dir", "http_addr", "nats.url", "public_url", "carriers.twilio.api_base", "carriers.telnyx.api_base"} {
		if !keys[k] {
			t.Errorf("setting %s not documented", k)
		}
	}
}
