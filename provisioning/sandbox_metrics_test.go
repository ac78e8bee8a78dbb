package provisioning_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/store/storetest"
)

// TestSandboxCarrierIsMeasured: the sandbox carrier's operations are
// counted and timed under carrier="sandbox" like twilio's and telnyx's.
func TestSandboxCarrierIsMeasured(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := provisioning.New(storetest.OpenEmbedded(t), provisioning.Options{Sandbox: true,
		Carriers: provisioning.CarrierSettings{Metrics: carrier.NewMetrics(reg)}})
	p := newWorkspace(t, s, "acme", 1000)
	ctx := context.Background()
	nums := search(t, s, p, "228", 1)
	if _, err := s.Search(ctx, p, provisioning.SearchRequest{Carrier: "sandbox",
		SearchQuery: carrier.SearchQuery{Country: "US", AreaCode: "123"}}); err == nil {
		t.Fatal("search of area code 123: no error")
	}
	if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: nums[0].PhoneNumber, Carrier: "sandbox"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, p, nums[0].PhoneNumber); err != nil {
		t.Fatal(err)
	}
	want := map[[2]string]float64{
		{"search", "ok"}: 1, {"search", "invalid_query"}: 1, {"buy", "ok"}: 1, {"release", "ok"}: 1,
	}
	for k, n := range want {
		// Read through the registry, as a scrape would.
		got := counterValue(t, reg, "callgate_carrier_operations_total", map[string]string{"carrier": "sandbox", "op": k[0], "result": k[1]})
		if got != n {
			t.Errorf("callgate_carrier_operations_total{carrier=sandbox,op=%s,result=%s} = %v, want %v", k[0], k[1], got, n)
		}
	}
	if got := testutil.CollectAndCount(reg, "callgate_carrier_operation_duration_seconds"); got == 0 {
		t.Error("no carrier duration series")
	}
	if got := histCount(t, reg, "callgate_carrier_operation_duration_seconds", map[string]string{"carrier": "sandbox", "op": "search"}); got != 2 {
		t.Errorf("sandbox search durations observed: %d, want 2", got)
	}
}

func matches(labels map[string]string, m interface {
	GetLabel() []*dto.LabelPair
}) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(labels, m) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func histCount(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) uint64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(labels, m) {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}
