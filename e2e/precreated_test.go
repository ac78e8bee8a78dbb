package e2e

import (
	"regexp"
	"testing"
)

// TestSeriesPresentBeforeTraffic scrapes a fresh node's /metrics before
// any call, webhook, purchase or API request: the series of every known
// label value are there at zero, so that rate() counts the first events
// and dashboard panels show 0 rather than nothing.
func TestSeriesPresentBeforeTraffic(t *testing.T) {
	cfg := testConfig(t)
	cfg.Region = "us-east"
	cfg.PublicURL = "https://gw.example.com" // webhooks on
	n, _ := startNode(t, cfg)
	text := scrape(t, n.HTTPAddr())
	for _, series := range []string{
		`callgate_media_jitter_seconds_count{leg="caller",region="us-east"}`,
		`callgate_media_loss_ratio_count{leg="agent",region="us-east"}`,
		`callgate_sip_failovers_total{region="us-east"}`,
		`callgate_sip_setup_answer_seconds_count{carrier="twilio",origin="purchased",region="us-east"}`,
		`callgate_sip_rejected_total{reason="unknown_number"}`,
		`callgate_sip_rejected_total{reason="unknown_source"}`,
		`callgate_sip_calls_total{class="5xx"}`,
		`callgate_webhook_requests_total{carrier="twilio",kind="voice",result="ok"}`,
		`callgate_webhook_requests_total{carrier="telnyx",kind="call_control",result="bad_signature"}`,
		`callgate_carrier_operations_total{carrier="sandbox",op="buy",result="ok"}`,
		`callgate_provisioning_operations_total{operation="purchase",result="ok"}`,
		`callgate_api_requests_total{class="2xx",method="POST",route="/v1/numbers"}`,
		`callgate_api_requests_total{class="5xx",method="GET",route="/v1/numbers/{number}"}`,
		`callgate_api_request_duration_seconds_count{method="DELETE",route="/v1/numbers/{number}"}`,
		`callgate_audit_records_total{outcome="written"}`,
		`callgate_audit_records_total{outcome="suppressed"}`,
		`callgate_hook_outcomes_total{outcome="timeout"}`,
		`callgate_hook_request_duration_seconds_count`,
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` 0$`).MatchString(text) {
			t.Errorf("/metrics before any traffic lacks %s 0", series)
		}
	}
}
