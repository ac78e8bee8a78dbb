package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/callgate/callgate/audit"
)

// A method a path is not served for is a 405 problem whose Allow header
// lists exactly the methods the path is served for, on every route (the
// /v1/ catch-all would otherwise answer 404, and the mux's own 405 is
// plain text). It is answered before the API key is looked at.
func TestWrongMethodIs405ProblemWithAllow(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	fill := strings.NewReplacer("{number}", "%2B12025550123", "{id}", "acme")
	served := map[string][]string{
		"/healthz": {"GET"}, "/readyz": {"GET"}, "/v1/openapi.json": {"GET"},
	}
	for _, rt := range Routes {
		p := fill.Replace(rt.Path)
		served[p] = append(served[p], rt.Method)
	}
	for path, methods := range served {
		allow := slices.Clone(methods)
		if slices.Contains(allow, "GET") {
			allow = append(allow, "HEAD")
		}
		sort.Strings(allow)
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			if slices.Contains(methods, m) {
				continue
			}
			req, _ := http.NewRequest(m, srv.URL+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var p Problem
			err = json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			got := strings.Split(resp.Header.Get("Allow"), ", ")
			sort.Strings(got)
			if resp.StatusCode != 405 || err != nil || p.Status != 405 ||
				resp.Header.Get("Content-Type") != "application/problem+json" || !slices.Equal(got, allow) {
				t.Errorf("%s %s: %d %s Allow %q (problem %+v, %v), want 405 application/problem+json Allow %v",
					m, path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Allow"), p, err, allow)
			}
		}
	}
	// Unknown paths stay 404, served methods are not 405.
	for _, c := range []struct{ method, path string }{{"GET", "/v1/nothing"}, {"POST", "/v1/numbers/"}, {"HEAD", "/healthz"}} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 405 {
			t.Errorf("%s %s: 405 (Allow %q)", c.method, c.path, resp.Header.Get("Allow"))
		}
	}
}

// A POST, PUT or PATCH whose body is labelled with another media type than
// application/json (charset utf-8 allowed) is a 415 problem that changes
// nothing; a JSON body with or without the label is read.
func TestNonJSONBodyIs415(t *testing.T) {
	x := startTestAPI(t, audit.Limits{})
	agent := `{"id":"bot","name":"Bot","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:5090"}]}`
	send := func(key, method, path, ct, body string) (*http.Response, Problem) {
		t.Helper()
		req, _ := http.NewRequest(method, x.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var p Problem
		_ = json.Unmarshal(b, &p)
		return resp, p
	}
	for _, c := range []struct {
		key, method, path, ct, body, accept string
	}{
		{x.wsKey, "POST", "/v1/agents", "text/plain", agent, "Accept-Post"},
		{x.wsKey, "POST", "/v1/agents", "application/x-www-form-urlencoded", "id=bot&name=Bot", "Accept-Post"},
		{x.wsKey, "POST", "/v1/agents", "application/json; charset=iso-8859-1", agent, "Accept-Post"},
		{x.wsKey, "POST", "/v1/agents", "application/json;;", agent, "Accept-Post"},
		{x.wsKey, "POST", "/v1/agents", "application/jsonx", agent, "Accept-Post"},
		{x.wsKey, "PUT", "/v1/agents/bot", "application/xml", "<agent/>", ""},
		{x.wsKey, "PATCH", "/v1/numbers/%2B12025550123", "text/plain", `{"agent_id":""}`, "Accept-Patch"},
		{x.adminKey, "POST", "/v1/workspaces/acme/credits", "text/json", `{"amount":5}`, "Accept-Post"},
	} {
		resp, p := send(c.key, c.method, c.path, c.ct, c.body)
		if resp.StatusCode != 415 || p.Status != 415 || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(p.Detail, c.ct) {
			t.Errorf("%s %s with %q: %d %s %+v, want a 415 problem naming the type", c.method, c.path, c.ct, resp.StatusCode, resp.Header.Get("Content-Type"), p)
		}
		if c.accept != "" && resp.Header.Get(c.accept) != "application/json" {
			t.Errorf("%s %s with %q: %s %q, want application/json", c.method, c.path, c.ct, c.accept, resp.Header.Get(c.accept))
		}
	}
	if code, m := x.do(x.wsKey, "GET", "/v1/agents/bot", ""); code != 404 {
		t.Fatalf("after refused bodies the agent exists: %d %v", code, m)
	}
	if code, m := x.do(x.wsKey, "GET", "/v1/credits", ""); code != 200 || m["balance"].(float64) != 1000 || len(m["entries"].([]any)) != 1 {
		t.Fatalf("after a refused top-up: %d %v, want the initial 1000 only", code, m)
	}
	for i, ct := range []string{"application/json; charset=utf-8", "Application/JSON; Charset=UTF-8", "application/json", ""} {
		body := strings.Replace(agent, `"bot"`, `"bot`+string(rune('a'+i))+`"`, 1)
		if resp, p := send(x.wsKey, "POST", "/v1/agents", ct, body); resp.StatusCode != 201 {
			t.Errorf("POST /v1/agents with %q: %d %+v, want 201", ct, resp.StatusCode, p)
		}
	}
	// Without a key the answer is 401 whatever the body.
	if resp, _ := send("", "POST", "/v1/agents", "text/plain", agent); resp.StatusCode != 401 {
		t.Errorf("no key, text/plain: %d, want 401", resp.StatusCode)
	}
}
