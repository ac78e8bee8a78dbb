package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/store/storetest"
)

// GET /v1/credits lists an outbound call's usage charge with its call id.
func TestCreditsListUsageWithCallID(t *testing.T) {
	ctx := context.Background()
	svc := provisioning.New(storetest.OpenEmbedded(t), provisioning.Options{Sandbox: true})
	if _, _, err := svc.CreateWorkspace(ctx, "acme", "Acme", 100); err != nil {
		t.Fatal(err)
	}
	key, err := svc.CreateKey(ctx, "acme", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ChargeUsage(ctx, provisioning.UsageCharge{Workspace: "acme", CallID: "call-42@10.0.0.1",
		Destination: "+442079460000", Minutes: 3, Amount: 15}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Service: svc}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/v1/credits", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Balance int64
		Entries []map[string]any
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body.Balance != 85 || len(body.Entries) != 2 {
		t.Fatalf("%d: %+v", resp.StatusCode, body)
	}
	e := body.Entries[1]
	if e["kind"] != "usage" || e["call_id"] != "call-42@10.0.0.1" || e["amount"].(float64) != -15 || e["number"] != "+442079460000" {
		t.Fatalf("usage entry %v", e)
	}
}
