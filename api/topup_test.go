package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/store/storetest"
)

// POST /v1/workspaces/{id}/credits honours Idempotency-Key: the same key
// and body answer the same entry and credit once; the same key with
// another body is a 409 problem.
func TestTopUpIdempotencyKey(t *testing.T) {
	ctx := context.Background()
	svc := provisioning.New(storetest.OpenEmbedded(t), provisioning.Options{Sandbox: true})
	if _, _, err := svc.CreateWorkspace(ctx, "acme", "Acme", 0); err != nil {
		t.Fatal(err)
	}
	admin, err := svc.CreateKey(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Service: svc}))
	defer srv.Close()
	post := func(body, key string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+"/v1/workspaces/acme/credits", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	code1, first := post(`{"amount":250,"reason":"invoice 9"}`, "inv-9")
	code2, second := post(`{"amount":250,"reason":"invoice 9"}`, "inv-9")
	if code1 != 201 || code2 != 201 || first["id"] != second["id"] || second["balance"].(float64) != 250 {
		t.Fatalf("same key twice: %d %v / %d %v", code1, first, code2, second)
	}
	if code, m := post(`{"amount":300,"reason":"invoice 9"}`, "inv-9"); code != 409 || !strings.Contains(m["detail"].(string), "Idempotency-Key") {
		t.Fatalf("same key, other body: %d %v", code, m)
	}
	if bal, err := svc.Balance(ctx, "acme"); err != nil || bal != 250 {
		t.Fatalf("balance %d %v, want 250 (credited once)", bal, err)
	}
}
