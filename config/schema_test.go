package config

import (
	"bufio"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/gateway/webhook"
	"github.com/callgate/callgate/store"
)

// yamlKeys lists every YAML key of t by reflection (sections too), written
// as `serve --help` writes them: a.b, list[].key. It is the test's own
// walk, independent of the one that generates Settings.
func yamlKeys(t reflect.Type, prefix string) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() || sf.Tag.Get("yaml") == "-" {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		ft := sf.Type
		if opts == "inline" {
			for k, v := range yamlKeys(ft, prefix) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out[prefix+name] = sf
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]():
			for k, v := range yamlKeys(ft, prefix+name+".") {
				out[k] = v
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			for k, v := range yamlKeys(ft.Elem(), prefix+name+"[].") {
				out[k] = v
			}
		}
	}
	return out
}

func settingsByKey(t *testing.T) map[string]Setting {
	t.Helper()
	m := map[string]Setting{}
	for _, s := range Settings() {
		if _, dup := m[s.Key]; dup {
			t.Errorf("setting %s listed twice", s.Key)
		}
		m[s.Key] = s
	}
	return m
}

// TestHelpListsEveryKey: no YAML key of the config structs (those of
// gateway/sip, webhook, media and store included) is missing from
// `serve --help` or has no help text. Before issue #11 the list was kept by
// hand and sip.max_call_duration and sip.probe.disabled were missing.
func TestHelpListsEveryKey(t *testing.T) {
	settings := settingsByKey(t)
	keys := yamlKeys(reflect.TypeFor[Config](), "")
	for k, sf := range keys {
		ft := sf.Type
		section := ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]()
		s, ok := settings[k]
		switch {
		case section && ok:
			t.Errorf("section %s is listed as a setting", k)
		case section:
		case !ok:
			t.Errorf("%s (%s) is not in serve --help", k, sf.Name)
		case strings.TrimSpace(s.Help) == "":
			t.Errorf("%s has no help: add a help tag to %s", k, sf.Name)
		}
	}
	for k := range settings {
		if _, ok := keys[k]; !ok {
			t.Errorf("serve --help lists %s, which is not a key", k)
		}
	}
	for k, def := range map[string]string{
		"sip.max_call_duration": "4h",
		"sip.probe.disabled":    "false",
		"sip.probe.interval":    "5s",
		"renewal_interval":      "1m", // durations as the file writes them, not 1m0s
		"sip.trunks":            "[local]",
		"media.mode":            "direct",
	} {
		if s := settings[k]; s.Default != def {
			t.Errorf("%s: default %q, want %q", k, s.Default, def)
		}
	}
}

// TestEnvNamesKept: every environment variable that worked before the
// settings were generated still works, with the same name, setting the
// same key; and no variable appeared that the fixture does not list.
func TestEnvNamesKept(t *testing.T) {
	type entry struct{ env, key, sample string }
	f, err := os.Open("testdata/env-main.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want []entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		w := strings.Fields(line)
		if len(w) != 3 {
			t.Fatalf("fixture line %q", line)
		}
		want = append(want, entry{w[0], w[1], w[2]})
	}
	if len(want) < 31 { // the 31 of issue #11, then every one added since
		t.Fatalf("fixture has %d variables, main had 31 before they were generated", len(want))
	}

	got := map[string]string{} // env → key
	for _, s := range Settings() {
		if s.Env != "" {
			if k, dup := got[s.Env]; dup {
				t.Errorf("%s sets both %s and %s", s.Env, k, s.Key)
			}
			got[s.Env] = s.Key
		}
	}
	for _, w := range want {
		if got[w.env] != w.key {
			t.Errorf("%s: sets %q, want %q", w.env, got[w.env], w.key)
		}
		delete(got, w.env)
	}
	for env, key := range got {
		t.Errorf("%s (%s) is new: add it to testdata/env-main.txt if that is meant", env, key)
	}

	// And each one takes effect.
	env := map[string]string{}
	for _, w := range want {
		env[w.env] = w.sample
	}
	c := Default() // not Load: the samples together are not a valid config (nats.url with nats.listen)
	if probs := c.applyEnv(func(k string) string { return env[k] }); len(probs) > 0 {
		t.Fatal(probs)
	}
	cv := reflect.ValueOf(c)
	for _, w := range want {
		v, ok := valueAt(cv, w.key)
		if !ok {
			t.Errorf("%s: no key %s", w.env, w.key)
			continue
		}
		if s := formatValue(v); s != w.sample {
			t.Errorf("%s=%s: %s is %q", w.env, w.sample, w.key, s)
		}
	}
}

// valueAt finds a YAML key's value in a config by walking yaml tags.
func valueAt(v reflect.Value, key string) (reflect.Value, bool) {
	name, rest, more := strings.Cut(key, ".")
	for i := 0; i < v.NumField(); i++ {
		sf := v.Type().Field(i)
		if !sf.IsExported() {
			continue
		}
		n, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if opts == "inline" {
			if fv, ok := valueAt(v.Field(i), key); ok {
				return fv, true
			}
			continue
		}
		if n != name {
			continue
		}
		if !more {
			return v.Field(i), true
		}
		return valueAt(v.Field(i), rest)
	}
	return reflect.Value{}, false
}

// TestEnvBadValues: a bad value names its variable and key, and every bad
// variable is reported at once.
func TestEnvBadValues(t *testing.T) {
	env := map[string]string{
		"CALLGATE_NATS_REPLICAS":    "three",
		"CALLGATE_SANDBOX":          "maybe",
		"CALLGATE_RENEWAL_INTERVAL": "hourly",
	}
	_, err := Load("", func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("bad variables accepted")
	}
	for _, want := range []string{
		`CALLGATE_NATS_REPLICAS (nats.replicas): "three" is not an integer`,
		`CALLGATE_SANDBOX (sandbox): "maybe" is not true or false`,
		`CALLGATE_RENEWAL_INTERVAL (renewal_interval): "hourly" is not a duration`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// TestEnvTagsOnScalars: an env tag is only on a value one variable can
// hold (setString panics on anything else).
func TestEnvTagsOnScalars(t *testing.T) {
	for _, f := range configFields() {
		if f.tag.Get("env") == "" {
			continue
		}
		if f.index == nil {
			t.Errorf("%s: env tag under a list", f.path)
		}
		switch f.typ.Kind() {
		case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		default:
			t.Errorf("%s: env tag on a %s", f.path, f.typ)
		}
		if !strings.HasPrefix(f.tag.Get("env"), "CALLGATE_") {
			t.Errorf("%s: env %s does not start with CALLGATE_", f.path, f.tag.Get("env"))
		}
	}
}

// TestDefaultTags: a default tag either describes an inherited value,
// "(...)", or is a component's own default for a zero value, and then it
// says what the component uses.
func TestDefaultTags(t *testing.T) {
	d := formatDuration
	components := map[string]string{
		"nats.audit.max_age":              d(store.DefaultAuditMaxAge),
		"nats.audit.max_bytes":            strconv.Itoa(store.DefaultAuditMaxBytes),
		"nats.history.max_age":            d(store.DefaultHistoryMaxAge),
		"nats.history.max_bytes":          strconv.Itoa(store.DefaultHistoryMaxBytes),
		"media.bind_ip":                   media.DefaultBindIP,
		"media.port_min":                  strconv.Itoa(media.DefaultPortMin),
		"media.port_max":                  strconv.Itoa(media.DefaultPortMax),
		"media.media_timeout":             d(media.DefaultMediaTimeout),
		"media.latch_packets":             strconv.Itoa(media.DefaultLatchPackets),
		"media.latch_window":              d(media.DefaultLatchWindow),
		"webhook.max_connections":         strconv.Itoa(webhook.DefaultMaxConnections),
		"webhook.max_body_bytes":          strconv.Itoa(webhook.DefaultMaxBodyBytes),
		"webhook.timestamp_tolerance":     d(webhook.DefaultTimestampTolerance),
		"webhook.twilio.ring_timeout":     d(webhook.DefaultRingTimeout),
		"webhook.telnyx.transfer_workers": strconv.Itoa(webhook.DefaultTransferWorkers),
		"webhook.telnyx.transfer_queue":   strconv.Itoa(webhook.DefaultTransferQueue),
		"webhook.telnyx.transfer_timeout": d(webhook.DefaultTransferTimeout),
		"webhook.messaging.workers":       strconv.Itoa(webhook.DefaultDeliveryWorkers),
		"webhook.messaging.queue":         strconv.Itoa(webhook.DefaultDeliveryQueue),
		"webhook.messaging.timeout":       d(webhook.DefaultDeliveryTimeout),
		"webhook.messaging.attempts":      strconv.Itoa(webhook.DefaultDeliveryAttempts),
	}
	cv := reflect.ValueOf(Default())
	var tagged []string
	for _, f := range configFields() {
		def, ok := f.tag.Lookup("default")
		if !ok {
			continue
		}
		tagged = append(tagged, f.path)
		if strings.HasPrefix(def, "(") && strings.HasSuffix(def, ")") {
			continue
		}
		want, known := components[f.path]
		switch {
		case !known:
			t.Errorf("%s: default tag %q is neither (a description) nor a component's default checked here", f.path, def)
		case def != want:
			t.Errorf("%s: help says default %q, the component uses %q", f.path, def, want)
		}
		if v, _ := valueAt(cv, f.path); v.IsValid() && !v.IsZero() {
			t.Errorf("%s: default tag %q hides Default()'s %q", f.path, def, formatValue(v))
		}
	}
	sort.Strings(tagged)
	if len(tagged) < 20 {
		t.Errorf("only %d default tags: %v", len(tagged), tagged)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 30 * time.Second: "30s", time.Minute: "1m", 90 * time.Second: "1m30s",
		time.Hour: "1h", 2160 * time.Hour: "2160h", time.Hour + time.Second: "1h0m1s", 1500 * time.Millisecond: "1.5s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
