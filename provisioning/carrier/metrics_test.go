package carrier_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/telnyx"
	"github.com/callgate/callgate/provisioning/carrier/telnyx/telnyxfake"
	"github.com/callgate/callgate/provisioning/carrier/twilio"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

func TestInstrument(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := carrier.NewMetrics(reg)
	fk := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+14155550123"}}})
	tw, err := twilio.New(twilio.Config{AccountSID: fk.AccountSID(), AuthToken: fk.AuthToken(), APIBase: fk.URL()})
	if err != nil {
		t.Fatal(err)
	}
	c := carrier.Instrument(tw, m)
	ctx := context.Background()
	if err := c.ValidateCredentials(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, "+14155550999"); err == nil {
		t.Fatal("release of an unknown number succeeded")
	}
	fk.FailNext(twiliofake.Failure{Status: 503})
	if _, err := c.ListOwned(ctx); err == nil {
		t.Fatal("503 not reported")
	}
	tx := telnyxfake.MustNew(t, telnyxfake.Options{})
	tl, _ := telnyx.New(telnyx.Config{APIKey: tx.APIKey(), APIBase: tx.URL()})
	if err := carrier.Instrument(tl, m).SetRegion(ctx, "+13125550100", "us1"); err == nil {
		t.Fatal("telnyx region accepted")
	}
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"twilio", "validate", "ok"}, 1},
		{[]string{"twilio", "release", "not_found"}, 1},
		{[]string{"twilio", "list", "unavailable"}, 1},
		{[]string{"telnyx", "set_region", "region_unsupported"}, 1},
		{[]string{"twilio", "buy", "ok"}, 0},
	} {
		got := testutil.ToFloat64(counter(t, reg, tc.labels))
		if got != tc.want {
			t.Errorf("%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	n, err := testutil.GatherAndCount(reg, "callgate_carrier_operations_total", "callgate_carrier_operation_duration_seconds")
	if err != nil || n != 4*7*10+4*7 {
		t.Fatalf("series %d, %v", n, err)
	}
	probs, err := testutil.GatherAndLint(reg)
	if err != nil || len(probs) != 0 {
		t.Fatalf("lint: %v %v", probs, err)
	}
}

// counter finds one series of callgate_carrier_operations_total.
func counter(t *testing.T, reg *prometheus.Registry, labels []string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "callgate_carrier_operations_total" {
			continue
		}
		for _, m := range mf.Metric {
			var vals []string
			for _, lp := range m.Label {
				vals = append(vals, lp.GetValue())
			}
			if strings.Join(vals, ",") == strings.Join(labels, ",") {
				c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
				c.Add(m.GetCounter().GetValue())
				return c
			}
		}
	}
	t.Fatalf("no series %v", labels)
	return nil
}

func TestResultLabel(t *testing.T) {
	for err, want := range map[error]string{
		nil: "ok",
		&carrier.Error{Carrier: "twilio", Op: "buy", Kind: carrier.ErrNotAvailable}: "not_available",
		context.Canceled: "canceled",
	} {
		if got := carrier.ResultLabel(err); got != want {
			t.Errorf("ResultLabel(%v) = %q, want %q", err, got, want)
		}
	}
}
