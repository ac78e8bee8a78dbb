// Package telnyxfake is a local stand-in for the parts of the Telnyx v2 REST
// API that callgate uses: GET /v2/balance, GET /v2/available_phone_numbers,
// POST and GET /v2/number_orders, GET/PATCH/DELETE /v2/phone_numbers,
// GET/PATCH /v2/phone_numbers/{id}/messaging, and Call Control (calls.go):
// POST /v2/calls, the transfer, hangup and send_dtmf actions, incoming
// calls (Incoming) and signed call webhooks.
//
// It answers with the paths, status codes and JSON shapes of Telnyx's
// published API reference ({"data": ...}, list "meta" with page_number,
// page_size, total_pages, total_results; errors as {"errors":[{"code",
// "title","detail","source","meta"}]}), including 401 code 10009
// "Authentication failed" and 404 code 10005 "Resource not found". Number
// orders can be made to stay "pending". Every request is recorded so tests
// can assert what was and was not written to the account, and failures (5xx,
// slow answers) can be injected.
//
// It runs on 127.0.0.1 and does not need a testing.T, so a command such as
// "callgate dev fake-carrier" can start it.
//
// Codes for validation failures (400/422) are the fake's choice; the adapter
// maps on HTTP status only.
package telnyxfake

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Number is a phone number in the fake's inventory or on its account.
type Number struct {
	ID                 string // phone number resource id; generated for owned numbers when empty
	PhoneNumber        string // E.164
	Type               string // local (default), mobile, toll_free, national
	Country            string // ISO alpha-2; default US
	Region             string // state, e.g. "IL"
	Locality           string // rate center / city
	Features           []string
	ConnectionID       string
	MessagingProfileID string
}

// Options configure a Server.
type Options struct {
	APIKey    string   // default DefaultAPIKey
	Owned     []Number // numbers already on the account
	Inventory []Number // numbers for sale
	Addr      string   // listen address; default 127.0.0.1:0
	// RequireSearch refuses (422) to order a number that no search returned
	// in the last 10 minutes, as Telnyx does.
	RequireSearch bool
}

// DefaultAPIKey is the key a fake accepts unless Options.APIKey is set.
const DefaultAPIKey = "KEY0FAKE0TELNYX0KEY_abcdefghij1234"

// Request is one request the fake received.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Body   []byte // raw body of PATCH/POST
	Status int    // status the fake answered with
}

// JSON decodes the request body into v.
func (r Request) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// Failure is an injected fault for the next matching requests.
type Failure struct {
	Method       string        // "" matches any method
	PathContains string        // "" matches any path
	Status       int           // answer with this status and a Telnyx error body; 0 = answer normally after Delay
	Code         string        // error code in that body; default "10007"
	Title        string        // error title; default "Unexpected error"
	Delay        time.Duration // wait before answering
	Times        int           // how many requests; default 1
}

// Cleaner is satisfied by testing.TB; New registers Close with it.
type Cleaner interface{ Cleanup(func()) }

type order struct {
	id        string
	numbers   []Number
	status    string // pending, success, failure
	pollsLeft int    // GETs before a pending order completes; <0 never
	connID    string
	msgID     string
	custRef   string
	created   time.Time
	numberIDs []string // number_order_phone_number ids
}

// Server is a running fake.
type Server struct {
	opts Options
	srv  *httptest.Server
	done chan struct{}
	once sync.Once

	mu           sync.Mutex
	searched     map[string]time.Time // number -> last time a search returned it
	owned        []*Number
	inventory    []Number
	orders       map[string]*order
	pendingPolls int // for new orders: 0 complete at once, n>0 after n GETs, <0 never
	requests     []Request
	failures     []Failure
	// calls.go: Call Control
	calls      map[string]*DialledCall
	callOrder  []string
	webhookKey ed25519.PrivateKey
	wg         sync.WaitGroup // webhooks sent after an answer
}

// New starts a fake on 127.0.0.1. c may be nil; when it is a testing.TB the
// server is closed at the end of the test.
func New(c Cleaner, opts Options) (*Server, error) {
	if opts.APIKey == "" {
		opts.APIKey = DefaultAPIKey
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("telnyxfake: listen %s: %w", opts.Addr, err)
	}
	s := &Server{opts: opts, done: make(chan struct{}), orders: map[string]*order{}, searched: map[string]time.Time{}}
	for _, n := range opts.Owned {
		n := n
		fill(&n)
		if n.ID == "" {
			n.ID = newNumericID()
		}
		s.owned = append(s.owned, &n)
	}
	for _, n := range opts.Inventory {
		fill(&n)
		s.inventory = append(s.inventory, n)
	}
	s.srv = httptest.NewUnstartedServer(s.handler())
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.Start()
	if c != nil {
		c.Cleanup(s.Close)
	}
	return s, nil
}

// MustNew is New that panics on error.
func MustNew(c Cleaner, opts Options) *Server {
	s, err := New(c, opts)
	if err != nil {
		panic(err)
	}
	return s
}

func fill(n *Number) {
	if n.Type == "" {
		n.Type = "local"
	}
	if n.Country == "" {
		n.Country = "US"
	}
	if n.Features == nil {
		n.Features = []string{"voice", "sms"}
	}
}

// URL is the base URL (http://127.0.0.1:PORT) to use as the adapter's APIBase.
func (s *Server) URL() string { return s.srv.URL }

// APIKey is the key the fake accepts.
func (s *Server) APIKey() string { return s.opts.APIKey }

// Close stops the server; requests held by an injected delay end at once.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.done)
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.wg.Wait()
	})
}

// FailNext injects a failure for the next matching request(s).
func (s *Server) FailNext(f Failure) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	s.failures = append(s.failures, f)
	s.mu.Unlock()
}

// SetOrdersPending makes new number orders stay "pending" for polls GETs of
// the order before they succeed; polls < 0 keeps them pending until
// CompletePendingOrders or FailPendingOrders.
func (s *Server) SetOrdersPending(polls int) {
	s.mu.Lock()
	s.pendingPolls = polls
	s.mu.Unlock()
}

// CompletePendingOrders finishes every pending order successfully.
func (s *Server) CompletePendingOrders() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.orders {
		if o.status == "pending" {
			s.completeLocked(o)
		}
	}
}

// FailPendingOrders fails every pending order (its numbers go back on sale).
func (s *Server) FailPendingOrders() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.orders {
		if o.status == "pending" {
			o.status = "failure"
			s.inventory = append(s.inventory, o.numbers...)
		}
	}
}

// Requests returns every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Writes returns the requests that could change the account (any method
// other than GET and HEAD), whatever the fake answered.
func (s *Server) Writes() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			out = append(out, r)
		}
	}
	return out
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
}

// Owned returns a copy of the numbers on the account.
func (s *Server) Owned() []Number {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Number, len(s.owned))
	for i, n := range s.owned {
		out[i] = *n
	}
	return out
}

// OwnedNumber returns the account's number e164, if any.
func (s *Server) OwnedNumber(e164 string) (Number, bool) {
	for _, n := range s.Owned() {
		if n.PhoneNumber == e164 {
			return n, true
		}
	}
	return Number{}, false
}

// AddInventory puts numbers up for sale.
func (s *Server) AddInventory(ns ...Number) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range ns {
		fill(&n)
		s.inventory = append(s.inventory, n)
	}
}

// GenerateInventory returns n US numbers of type typ in area code ac
// (+1 ac 555 02xx) with voice and SMS, for seeding.
func GenerateInventory(ac, typ string, n int) []Number {
	out := make([]Number, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, Number{PhoneNumber: fmt.Sprintf("+1%s555%04d", ac, 200+i), Type: typ, Country: "US",
			Region: "IL", Locality: "CHICAGO", Features: []string{"voice", "sms", "mms", "emergency"}})
	}
	return out
}

// SortedPhoneNumbers returns the E.164 numbers of ns, sorted.
func SortedPhoneNumbers(ns []Number) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.PhoneNumber
	}
	sort.Strings(out)
	return out
}

// --- HTTP ---

type apiError struct {
	Code   string            `json:"code"`
	Title  string            `json:"title"`
	Detail string            `json:"detail,omitempty"`
	Source map[string]string `json:"source,omitempty"`
	Meta   map[string]string `json:"meta,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, e apiError) {
	if e.Meta == nil {
		e.Meta = map[string]string{"url": "https://developers.telnyx.com/docs/overview/errors/" + e.Code}
	}
	writeJSON(w, status, map[string]any{"errors": []apiError{e}})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, apiError{Code: "10005", Title: "Resource not found",
		Detail: "The requested resource or URL could not be found."})
}

func badParam(w http.ResponseWriter, param, detail string) {
	writeError(w, http.StatusBadRequest, apiError{Code: "10015", Title: "Bad Request", Detail: detail,
		Source: map[string]string{"parameter": param}})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/balance", s.balance)
	mux.HandleFunc("GET /v2/available_phone_numbers", s.search)
	mux.HandleFunc("POST /v2/number_orders", s.createOrder)
	mux.HandleFunc("GET /v2/number_orders/{id}", s.getOrder)
	mux.HandleFunc("GET /v2/phone_numbers", s.listNumbers)
	mux.HandleFunc("GET /v2/phone_numbers/{id}", s.getNumber)
	mux.HandleFunc("PATCH /v2/phone_numbers/{id}", s.updateNumber)
	mux.HandleFunc("DELETE /v2/phone_numbers/{id}", s.deleteNumber)
	mux.HandleFunc("GET /v2/phone_numbers/{id}/messaging", s.getMessaging)
	mux.HandleFunc("PATCH /v2/phone_numbers/{id}/messaging", s.updateMessaging)
	mux.HandleFunc("POST /v2/calls", s.dial)
	mux.HandleFunc("POST /v2/calls/{id}/actions/transfer", s.transfer)
	mux.HandleFunc("POST /v2/calls/{id}/actions/hangup", s.hangup)
	mux.HandleFunc("POST /v2/calls/{id}/actions/send_dtmf", s.sendDTMF)
	mux.HandleFunc("/", notFound)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		rec := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query()}
		if r.Body != nil && r.Method != http.MethodGet {
			rec.Body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
			r.Body = io.NopCloser(strings.NewReader(string(rec.Body)))
		}
		defer func() {
			rec.Status = sw.status
			s.mu.Lock()
			s.requests = append(s.requests, rec)
			s.mu.Unlock()
		}()
		if f, ok := s.takeFailure(r); ok {
			if f.Delay > 0 {
				t := time.NewTimer(f.Delay)
				select {
				case <-t.C:
				case <-r.Context().Done():
					t.Stop()
					sw.status = 499
					return
				case <-s.done:
					t.Stop()
					return
				}
			}
			if f.Status != 0 {
				code, title := f.Code, f.Title
				if code == "" {
					code = "10007"
				}
				if title == "" {
					title = "Unexpected error"
				}
				writeError(sw, f.Status, apiError{Code: code, Title: title, Detail: "An unexpected error occured."})
				return
			}
		}
		if r.Header.Get("Authorization") != "Bearer "+s.opts.APIKey {
			writeError(sw, http.StatusUnauthorized, apiError{Code: "10009", Title: "Authentication failed",
				Detail: "Could not understand the provided credentials."})
			return
		}
		mux.ServeHTTP(sw, r)
	})
}

func (s *Server) takeFailure(r *http.Request) (Failure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.failures {
		if f.Method != "" && f.Method != r.Method {
			continue
		}
		if f.PathContains != "" && !strings.Contains(r.URL.Path, f.PathContains) {
			continue
		}
		s.failures[i].Times--
		if s.failures[i].Times <= 0 {
			s.failures = append(s.failures[:i], s.failures[i+1:]...)
		}
		return f, true
	}
	return Failure{}, false
}

func (s *Server) balance(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
		"record_type": "balance", "balance": "300.00", "credit_limit": "100.00",
		"available_credit": "400.00", "pending": "0.00", "currency": "USD",
	}})
}

func hasAll(have, want []string) bool {
	for _, f := range want {
		found := false
		for _, h := range have {
			if h == f {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cc := q.Get("filter[country_code]")
	if len(cc) != 2 {
		badParam(w, "filter[country_code]", "filter[country_code] must be an ISO 3166-1 alpha-2 country code")
		return
	}
	ndc := q.Get("filter[national_destination_code]")
	if ndc != "" {
		ok := len(ndc) == 3 && ndc[0] >= '2' && ndc[0] <= '9'
		for i := 0; ok && i < len(ndc); i++ {
			ok = ndc[i] >= '0' && ndc[i] <= '9'
		}
		if !ok {
			badParam(w, "filter[national_destination_code]", "filter[national_destination_code] must be a valid national destination code")
			return
		}
	}
	typ := q.Get("filter[phone_number_type]")
	switch typ {
	case "", "local", "toll_free", "mobile", "national", "shared_cost":
	default:
		badParam(w, "filter[phone_number_type]", "filter[phone_number_type] must be one of local, toll_free, mobile, national, shared_cost")
		return
	}
	var feats []string
	feats = append(feats, q["filter[features][]"]...)
	for _, v := range q["filter[features]"] {
		feats = append(feats, strings.Split(v, ",")...)
	}
	limit := 20
	if v := q.Get("filter[limit]"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			badParam(w, "filter[limit]", "filter[limit] must be between 1 and 100")
			return
		}
		limit = n
	}
	s.mu.Lock()
	var data []map[string]any
	total := 0
	for _, n := range s.inventory {
		if n.Country != strings.ToUpper(cc) || (typ != "" && n.Type != typ) || !hasAll(n.Features, feats) {
			continue
		}
		if ndc != "" && !strings.HasPrefix(n.PhoneNumber, "+1"+ndc) {
			continue
		}
		total++
		if len(data) >= limit {
			continue
		}
		s.searched[n.PhoneNumber] = time.Now()
		features := []map[string]string{}
		for _, f := range n.Features {
			features = append(features, map[string]string{"name": f})
		}
		data = append(data, map[string]any{
			"record_type":   "available_phone_number",
			"phone_number":  n.PhoneNumber,
			"vanity_format": "",
			"best_effort":   false,
			"quickship":     true,
			"reservable":    true,
			"region_information": []map[string]string{
				{"region_type": "country_code", "region_name": n.Country},
				{"region_type": "rate_center", "region_name": n.Locality},
				{"region_type": "state", "region_name": n.Region},
			},
			"cost_information": map[string]string{"upfront_cost": "1.00", "monthly_cost": "1.00", "currency": "USD"},
			"features":         features,
		})
	}
	s.mu.Unlock()
	if data == nil {
		data = []map[string]any{}
	}
	meta := map[string]int{"total_results": total, "best_effort_results": 0}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "meta": meta, "metadata": meta})
}

func (s *Server) orderJSON(o *order) map[string]any {
	pns := []map[string]any{}
	for i, n := range o.numbers {
		pns = append(pns, map[string]any{
			"id": o.numberIDs[i], "record_type": "number_order_phone_number", "phone_number": n.PhoneNumber,
			"phone_number_type": n.Type, "country_code": n.Country, "regulatory_requirements": []any{},
			"requirements_met": true, "status": o.status,
		})
	}
	ts := o.created.Format(time.RFC3339)
	return map[string]any{"data": map[string]any{
		"id": o.id, "record_type": "number_order", "phone_numbers": pns, "phone_numbers_count": len(pns),
		"connection_id": nullable(o.connID), "messaging_profile_id": nullable(o.msgID), "billing_group_id": nil,
		"customer_reference": nullable(o.custRef), "created_at": ts, "updated_at": ts,
		"requirements_met": true, "status": o.status, "sub_number_orders_ids": []string{newUUID()},
	}}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// completeLocked moves an order's numbers onto the account; mu held.
func (s *Server) completeLocked(o *order) {
	o.status = "success"
	for _, n := range o.numbers {
		n := n
		n.ID = newNumericID()
		n.ConnectionID = o.connID
		n.MessagingProfileID = o.msgID
		s.owned = append(s.owned, &n)
	}
}

func (s *Server) createOrder(w http.ResponseWriter, r *http.Request) {
	var body struct {
		PhoneNumbers []struct {
			PhoneNumber string `json:"phone_number"`
		} `json:"phone_numbers"`
		ConnectionID       string `json:"connection_id"`
		MessagingProfileID string `json:"messaging_profile_id"`
		CustomerReference  string `json:"customer_reference"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, apiError{Code: "10015", Title: "Bad Request", Detail: "The request body is not valid JSON."})
		return
	}
	if len(body.PhoneNumbers) == 0 {
		writeError(w, http.StatusUnprocessableEntity, apiError{Code: "10015", Title: "Invalid value",
			Detail: "phone_numbers must contain at least one phone number", Source: map[string]string{"pointer": "/phone_numbers"}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var picked []int
	for i, pn := range body.PhoneNumbers {
		idx := -1
		for j, n := range s.inventory {
			if n.PhoneNumber == pn.PhoneNumber {
				idx = j
				break
			}
		}
		if idx >= 0 && s.opts.RequireSearch && time.Since(s.searched[pn.PhoneNumber]) > 10*time.Minute {
			writeError(w, http.StatusUnprocessableEntity, apiError{Code: "85001", Title: "Number not available",
				Detail: fmt.Sprintf("%s must be returned by a recent number search before it can be ordered", pn.PhoneNumber),
				Source: map[string]string{"pointer": fmt.Sprintf("/phone_numbers/%d/phone_number", i)}})
			return
		}
		if idx < 0 {
			writeError(w, http.StatusUnprocessableEntity, apiError{Code: "85001", Title: "Number not available",
				Detail: fmt.Sprintf("%s is not available for purchase", pn.PhoneNumber),
				Source: map[string]string{"pointer": fmt.Sprintf("/phone_numbers/%d/phone_number", i)}})
			return
		}
		picked = append(picked, idx)
	}
	o := &order{id: newUUID(), status: "pending", pollsLeft: s.pendingPolls, connID: body.ConnectionID,
		msgID: body.MessagingProfileID, custRef: body.CustomerReference, created: time.Now().UTC()}
	sort.Sort(sort.Reverse(sort.IntSlice(picked)))
	for _, idx := range picked {
		o.numbers = append([]Number{s.inventory[idx]}, o.numbers...)
		o.numberIDs = append(o.numberIDs, newUUID())
		s.inventory = append(s.inventory[:idx], s.inventory[idx+1:]...)
	}
	s.orders[o.id] = o
	if o.pollsLeft == 0 {
		s.completeLocked(o)
	}
	writeJSON(w, http.StatusOK, s.orderJSON(o))
}

func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[r.PathValue("id")]
	if !ok {
		notFound(w, r)
		return
	}
	if o.status == "pending" && o.pollsLeft > 0 {
		o.pollsLeft--
		if o.pollsLeft == 0 {
			s.completeLocked(o)
		}
	}
	writeJSON(w, http.StatusOK, s.orderJSON(o))
}

func numberJSON(n *Number, status string) map[string]any {
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
	return map[string]any{
		"id": n.ID, "record_type": "phone_number", "phone_number": n.PhoneNumber, "status": status,
		"tags": []string{}, "external_pin": nil, "connection_id": nullable(n.ConnectionID), "connection_name": nil,
		"customer_reference": nil, "messaging_profile_id": nullable(n.MessagingProfileID), "messaging_profile_name": nil,
		"billing_group_id": nil, "emergency_enabled": false, "emergency_address_id": nil,
		"call_forwarding_enabled": true, "cnam_listing_enabled": false, "caller_id_name_enabled": false,
		"call_recording_enabled": false, "t38_fax_gateway_enabled": false, "number_level_routing": "disabled",
		"phone_number_type": n.Type, "country_iso_alpha2": n.Country,
		"purchased_at": ts, "created_at": ts, "updated_at": ts,
	}
}

func (s *Server) listNumbers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pg, size := 1, 20
	if v := q.Get("page[number]"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			badParam(w, "page[number]", "page[number] must be a positive integer")
			return
		}
		pg = n
	}
	if v := q.Get("page[size]"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 250 {
			badParam(w, "page[size]", "page[size] must be between 1 and 250")
			return
		}
		size = n
	}
	filter := strings.TrimPrefix(q.Get("filter[phone_number]"), "+")
	s.mu.Lock()
	var all []*Number
	for _, n := range s.owned {
		if filter == "" || strings.Contains(n.PhoneNumber, filter) {
			all = append(all, n)
		}
	}
	data := []map[string]any{}
	for i := (pg - 1) * size; i < len(all) && i < pg*size; i++ {
		data = append(data, numberJSON(all[i], "active"))
	}
	s.mu.Unlock()
	pages := (len(all) + size - 1) / size
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "meta": map[string]int{
		"total_pages": pages, "total_results": len(all), "page_number": pg, "page_size": size}})
}

// byID returns the owned number with id; mu held.
func (s *Server) byID(id string) (int, *Number) {
	for i, n := range s.owned {
		if n.ID == id {
			return i, n
		}
	}
	return -1, nil
}

func (s *Server) getNumber(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, n := s.byID(r.PathValue("id"))
	if n == nil {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": numberJSON(n, "active")})
}

// optString reads a JSON string-or-null field as Telnyx's PATCH endpoints
// do: an absent key or null keeps the current value, "" unassigns, a
// string assigns.
func optString(m map[string]json.RawMessage, key string) (val string, set bool, err error) {
	raw, ok := m[key]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	err = json.Unmarshal(raw, &val)
	return val, err == nil, err
}

func (s *Server) updateNumber(w http.ResponseWriter, r *http.Request) {
	var m map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		writeError(w, http.StatusBadRequest, apiError{Code: "10015", Title: "Bad Request", Detail: "The request body is not valid JSON."})
		return
	}
	conn, set, err := optString(m, "connection_id")
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, apiError{Code: "10015", Title: "Invalid value", Detail: "connection_id must be a string",
			Source: map[string]string{"pointer": "/connection_id"}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, n := s.byID(r.PathValue("id"))
	if n == nil {
		notFound(w, r)
		return
	}
	if set {
		n.ConnectionID = conn
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": numberJSON(n, "active")})
}

func (s *Server) deleteNumber(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, n := s.byID(r.PathValue("id"))
	if n == nil {
		notFound(w, r)
		return
	}
	s.owned = append(s.owned[:i], s.owned[i+1:]...)
	writeJSON(w, http.StatusOK, map[string]any{"data": numberJSON(n, "deleted")})
}

func messagingJSON(n *Number) map[string]any {
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
	return map[string]any{"data": map[string]any{
		"record_type": "messaging_settings", "id": n.ID, "phone_number": n.PhoneNumber,
		"messaging_profile_id": nullable(n.MessagingProfileID), "messaging_product": "P2P",
		"country_code": n.Country, "type": "long-code", "traffic_type": "P2P",
		"eligible_messaging_products": []string{"A2P", "P2P"}, "created_at": ts, "updated_at": ts,
	}}
}

func (s *Server) getMessaging(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, n := s.byID(r.PathValue("id"))
	if n == nil {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, messagingJSON(n))
}

func (s *Server) updateMessaging(w http.ResponseWriter, r *http.Request) {
	var m map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		writeError(w, http.StatusBadRequest, apiError{Code: "10015", Title: "Bad Request", Detail: "The request body is not valid JSON."})
		return
	}
	prof, set, err := optString(m, "messaging_profile_id")
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, apiError{Code: "10015", Title: "Invalid value", Detail: "messaging_profile_id must be a string",
			Source: map[string]string{"pointer": "/messaging_profile_id"}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, n := s.byID(r.PathValue("id"))
	if n == nil {
		notFound(w, r)
		return
	}
	if set {
		n.MessagingProfileID = prof
	}
	writeJSON(w, http.StatusOK, messagingJSON(n))
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newNumericID returns a Telnyx-style numeric phone number id.
func newNumericID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return strconv.FormatUint(1000000000000000000+v%8000000000000000000, 10)
}

// DemoOptions is a ready-made account for walking the import and purchase
// flows by hand: three numbers on the customer's own connection and
// messaging profile, and local (312, 646) and toll-free numbers for sale.
func DemoOptions() Options {
	owned := []Number{
		{PhoneNumber: "+13125550101", Region: "IL", Locality: "CHICAGO", Features: []string{"voice", "sms", "mms"},
			ConnectionID: "1111111111111111111", MessagingProfileID: "40017000-0000-4000-8000-000000000001"},
		{PhoneNumber: "+13125550102", Region: "IL", Locality: "CHICAGO", ConnectionID: "1111111111111111111"},
		{PhoneNumber: "+16465550103", Region: "NY", Locality: "NEW YORK"},
	}
	inv := GenerateInventory("312", "local", 10)
	inv = append(inv, GenerateInventory("646", "local", 10)...)
	inv = append(inv, GenerateInventory("888", "toll_free", 5)...)
	return Options{Owned: owned, Inventory: inv}
}
