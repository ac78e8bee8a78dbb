package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes checks the OpenAPI document against the routes
// the server really has: every route documented, nothing documented that
// does not exist.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi version %q, want 3.1.x", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
			var op struct {
				Responses map[string]any `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil || len(op.Responses) == 0 {
				t.Errorf("%s %s: no responses documented", method, path)
			}
		}
	}
	served := map[string]bool{}
	for _, r := range Routes {
		served[r.Method+" "+r.Path] = true
	}
	var missing, extra []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("OpenAPI out of date:\n  undocumented routes: %v\n  documented but not served: %v", missing, extra)
	}
}

func TestServedDocumentAndUnknownEndpoint(t *testing.T) {
	a := New(Options{Ready: func() (bool, string) { return false, "routing snapshot not loaded yet" }})
	srv := httptest.NewServer(a)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, _ = http.Get(srv.URL + "/readyz")
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("readyz before the snapshot: %d, want 503", resp.StatusCode)
	}
	resp, _ = http.Get(srv.URL + "/v1/nothing")
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("unknown endpoint: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestOpenAPIDocumentShape: every operation has a unique operationId, tags
// declared at the top and a description; no server URL is fixed (the API
// answers on the node's own address); every object schema that lists
// properties says which are required; request bodies refuse unknown
// fields as the decoder does; operations with a body document 415.
func TestOpenAPIDocumentShape(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc["servers"]; ok {
		t.Errorf("servers is set: the document must not name a host")
	}
	declared := map[string]bool{}
	for _, tg := range doc["tags"].([]any) {
		declared[tg.(map[string]any)["name"].(string)] = true
	}
	ids := map[string]string{}
	for path, ops := range doc["paths"].(map[string]any) {
		for method, raw := range ops.(map[string]any) {
			op := raw.(map[string]any)
			where := strings.ToUpper(method) + " " + path
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s: no operationId", where)
			} else if prev, dup := ids[id]; dup {
				t.Errorf("%s: operationId %q already used by %s", where, id, prev)
			}
			ids[id] = where
			if d, _ := op["description"].(string); len(d) < 20 {
				t.Errorf("%s: no description", where)
			}
			tags, _ := op["tags"].([]any)
			if len(tags) == 0 {
				t.Errorf("%s: no tags", where)
			}
			for _, tg := range tags {
				if !declared[tg.(string)] {
					t.Errorf("%s: tag %v not declared in tags", where, tg)
				}
			}
			responses := op["responses"].(map[string]any)
			if _, ok := op["requestBody"]; ok {
				if _, ok := responses["415"]; !ok {
					t.Errorf("%s: takes a body but does not document 415", where)
				}
			}
		}
	}
	var walk func(at string, v any, inRequest bool)
	walk = func(at string, v any, inRequest bool) {
		switch v := v.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok && len(props) > 0 {
				if _, ok := v["required"]; !ok {
					t.Errorf("%s: object schema without required", at)
				}
				if inRequest && v["additionalProperties"] != false {
					t.Errorf("%s: request body schema without additionalProperties: false", at)
				}
			}
			for k, c := range v {
				walk(at+"/"+k, c, inRequest || k == "requestBody")
			}
		case []any:
			for i, c := range v {
				walk(at+"/"+strconv.Itoa(i), c, inRequest)
			}
		}
	}
	walk("#/paths", doc["paths"], false)
	walk("#/components/schemas", doc["components"].(map[string]any)["schemas"], false)
}
