package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeHelpListsSettings: `callgate serve --help` lists the settings
// generated from the config structs, keys that the hand-kept list missed
// included, with durations written as in the file.
func TestServeHelpListsSettings(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stderr := os.Stderr
	os.Stderr = f // the flag set's usage writes to os.Stderr
	err = serve([]string{"--help"})
	os.Stderr = stderr
	if err != nil {
		t.Fatalf("serve --help: %v", err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, want := range [][]string{
		{"sip.max_call_duration", "4h"},
		{"sip.probe.disabled", "false"},
		{"sip.addr", "CALLGATE_SIP_ADDR", "127.0.0.1:5060"},
		{"renewal_interval", "CALLGATE_RENEWAL_INTERVAL", "1m "},
		{"nats.creds_file", "CALLGATE_NATS_CREDS"},
	} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if w := strings.Fields(line); len(w) > 0 && w[0] == want[0] {
				found = true
				for _, w := range want[1:] {
					if !strings.Contains(line, w) {
						t.Errorf("%s: %q lacks %q", want[0], line, w)
					}
				}
			}
		}
		if !found {
			t.Errorf("serve --help does not list %s:\n%s", want[0], out)
		}
	}
}
