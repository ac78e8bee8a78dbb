package sip

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/callgate/callgate/routing"
)

// TestRefusalLabels: every refusal counts under a reason label that
// metrics.go pre-creates (dashboards and alerts use them), and routing's
// rejections keep the SIP status and label they always had.
func TestRefusalLabels(t *testing.T) {
	for _, rf := range []refusal{refuseDraining, refuseTooManyHops, refuseUnknownSource, refuseNoSnapshot,
		refuseUnknownNumber, refuseUnassigned, refuseNoEndpoint, refuseNoMediaPorts, refuseBadSDP} {
		if !slices.Contains(rejectReasons, rf.reason) {
			t.Errorf("refusal %d %q: label not pre-created in metrics.go", rf.status, rf.reason)
		}
	}
	for _, tc := range []struct {
		r      routing.Reason
		status int
		label  string
	}{
		{routing.ReasonUnknownNumber, 404, "unknown_number"},
		{routing.ReasonInactive, 480, "unassigned"},
		{routing.ReasonUnassigned, 480, "unassigned"},
		{routing.ReasonNoEndpoint, 503, "no_endpoint"},
	} {
		if rf := refusalFor(tc.r); rf.status != tc.status || rf.reason != tc.label {
			t.Errorf("refusalFor(%s) = %d %q, want %d %q", tc.r, rf.status, rf.reason, tc.status, tc.label)
		}
	}
	if !refuseNoEndpoint.retryAfter || refuseUnassigned.retryAfter {
		t.Error("Retry-After: want it on 503 no_endpoint only")
	}
}

// TestCallLogger: a call's logger carries its call_id and is made once.
func TestCallLogger(t *testing.T) {
	var buf bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&buf, nil))}
	c := &call{s: s, id: "abc@carrier"}
	l := c.logger()
	if c.logger() != l {
		t.Error("logger made twice")
	}
	l.Info("x")
	if !strings.Contains(buf.String(), "call_id=abc@carrier") {
		t.Errorf("log line %q has no call_id", buf.String())
	}
}
