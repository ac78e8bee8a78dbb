package api

import (
	"encoding/json"
	"testing"
)

// Both money-moving requests document the Idempotency-Key header they
// honour (POST /v1/numbers and POST /v1/workspaces/{id}/credits).
func TestOpenAPIDocumentsIdempotencyKey(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name string `json:"name"`
				In   string `json:"in"`
			} `json:"parameters"`
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/numbers", "/v1/workspaces/{id}/credits"} {
		op := doc.Paths[path]["post"]
		found := false
		for _, p := range op.Parameters {
			found = found || (p.Name == "Idempotency-Key" && p.In == "header")
		}
		if !found {
			t.Errorf("POST %s: Idempotency-Key header not documented", path)
		}
		if _, ok := op.Responses["409"]; !ok {
			t.Errorf("POST %s: 409 (key reused for another request) not documented", path)
		}
	}
}
