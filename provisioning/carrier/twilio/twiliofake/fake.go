// Package twiliofake is a local stand-in for the parts of Twilio's REST API
// that callgate uses: the Accounts resource, AvailablePhoneNumbers
// (Local, Mobile, TollFree, National), IncomingPhoneNumbers (create, read, update,
// delete) and Routes v2 PhoneNumbers (voice region).
//
// It answers with the paths, status codes and JSON of Twilio's published API
// (2010-04-01 and Routes v2), including error bodies such as
// {"code":20003,"message":"Authenticate","more_info":...,"status":401}, and it
// pages lists with Page/PageSize/PageToken and next_page_uri. It records every
// request so that tests can assert what was and was not written to the
// account, and failures (5xx, slow answers) can be injected.
//
// It runs on 127.0.0.1 and does not need a testing.T, so a command such as
// "callgate dev fake-carrier" can start it for a user to walk the import flow.
//
// Error codes used (the adapter maps on HTTP status, never on these codes):
// 20003 Authenticate (401), 20404 not found (404), 21422 number unavailable
// (400 on purchase), 21452 invalid area code (400 on search), 21608-style
// invalid parameter 400 for a bad VoiceRegion, 20500 internal error (5xx).
package twiliofake

import (
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

// Number types, as in carrier.Type*.
const (
	TypeLocal    = "local"
	TypeMobile   = "mobile"
	TypeTollFree = "toll_free"
	TypeNational = "national"
)

// Number is a phone number in the fake's inventory or on its account.
type Number struct {
	PhoneNumber string // E.164
	SID         string // PN...; generated for owned numbers when empty
	Type        string // local (default), mobile, toll_free, national
	Country     string // ISO alpha-2; default US
	Region      string // state or province, e.g. "CA"
	Locality    string // city
	Voice       bool
	SMS         bool
	MMS         bool

	// Settings of an owned number.
	FriendlyName        string
	VoiceURL            string
	VoiceMethod         string
	SMSURL              string
	SMSMethod           string
	StatusCallback      string
	VoiceApplicationSID string
	SMSApplicationSID   string
	TrunkSID            string
	VoiceRegion         string // Routes v2; "" until set (Twilio's default is us1)
}

// Options configure a Server.
type Options struct {
	AccountSID string   // default DefaultAccountSID
	AuthToken  string   // default DefaultAuthToken
	Owned      []Number // numbers already on the account
	Inventory  []Number // numbers for sale
	Addr       string   // listen address; default 127.0.0.1:0
}

// Default credentials of a fake account (Twilio refuses non-alphanumeric
// credentials before sending, so these are alphanumeric).
const (
	DefaultAccountSID = "AC00000000000000000000000000000001"
	DefaultAuthToken  = "faketoken0000000000000000000000a1"
)

// Request is one request the fake received.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Form   url.Values // form body of POST requests
	// Host is the host the client meant to reach (X-Forwarded-Host when
	// set by a rewriting transport, else the Host header).
	Host   string
	Status int // status the fake answered with
}

// Failure is an injected fault for the next matching requests.
type Failure struct {
	Method       string        // "" matches any method
	PathContains string        // "" matches any path
	Status       int           // answer with this status and a Twilio error body; 0 = answer normally after Delay
	Code         int           // Twilio error code in that body; default 20500 ("An internal server error has occurred")
	Message      string        // message in that body
	Delay        time.Duration // wait before answering (a slow or hung carrier)
	Times        int           // how many requests; default 1
}

// Cleaner is satisfied by testing.TB; New registers Close with it.
type Cleaner interface{ Cleanup(func()) }

// Server is a running fake.
type Server struct {
	opts Options
	srv  *httptest.Server
	done chan struct{}
	once sync.Once

	mu        sync.Mutex
	owned     []*Number // in creation order
	inventory []Number
	requests  []Request
	failures  []Failure
	calls     []*Call // calls.go
}

// New starts a fake on 127.0.0.1. c may be nil; when it is a testing.TB the
// server is closed at the end of the test.
func New(c Cleaner, opts Options) (*Server, error) {
	if opts.AccountSID == "" {
		opts.AccountSID = DefaultAccountSID
	}
	if opts.AuthToken == "" {
		opts.AuthToken = DefaultAuthToken
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("twiliofake: listen %s: %w", opts.Addr, err)
	}
	s := &Server{opts: opts, done: make(chan struct{})}
	for _, n := range opts.Owned {
		n := n
		fillDefaults(&n)
		if n.SID == "" {
			n.SID = newSID("PN")
		}
		s.owned = append(s.owned, &n)
	}
	for _, n := range opts.Inventory {
		fillDefaults(&n)
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

// MustNew is New that panics on error (for tests and examples).
func MustNew(c Cleaner, opts Options) *Server {
	s, err := New(c, opts)
	if err != nil {
		panic(err)
	}
	return s
}

func fillDefaults(n *Number) {
	if n.Type == "" {
		n.Type = TypeLocal
	}
	if n.Country == "" {
		n.Country = "US"
	}
}

// URL is the base URL (http://127.0.0.1:PORT) to use as the adapter's APIBase.
func (s *Server) URL() string { return s.srv.URL }

// AccountSID and AuthToken are the credentials the fake accepts.
func (s *Server) AccountSID() string { return s.opts.AccountSID }
func (s *Server) AuthToken() string  { return s.opts.AuthToken }

// Close stops the server; requests held by an injected delay end at once.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.done)
		s.srv.CloseClientConnections()
		s.srv.Close()
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
		fillDefaults(&n)
		s.inventory = append(s.inventory, n)
	}
}

// GenerateInventory returns n US numbers of type typ in area code ac
// (+1 ac 555 01xx), with voice and SMS, for seeding.
func GenerateInventory(ac, typ string, n int) []Number {
	out := make([]Number, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, Number{
			PhoneNumber: fmt.Sprintf("+1%s555%04d", ac, 100+i),
			Type:        typ, Country: "US", Region: "CA", Locality: "San Francisco",
			Voice: true, SMS: true, MMS: i%2 == 0,
		})
	}
	return out
}

// --- HTTP ---

type twilioError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, twilioError{Code: code, Message: msg, MoreInfo: fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), Status: status})
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
	mux.HandleFunc("GET /2010-04-01/Accounts/{acct}", s.fetchAccount)
	mux.HandleFunc("GET /2010-04-01/Accounts/{acct}/AvailablePhoneNumbers/{cc}/{kind}", s.searchNumbers)
	mux.HandleFunc("GET /2010-04-01/Accounts/{acct}/IncomingPhoneNumbers.json", s.listIncoming)
	mux.HandleFunc("POST /2010-04-01/Accounts/{acct}/IncomingPhoneNumbers.json", s.createIncoming)
	mux.HandleFunc("GET /2010-04-01/Accounts/{acct}/IncomingPhoneNumbers/{pn}", s.fetchIncoming)
	mux.HandleFunc("POST /2010-04-01/Accounts/{acct}/IncomingPhoneNumbers/{pn}", s.updateIncoming)
	mux.HandleFunc("DELETE /2010-04-01/Accounts/{acct}/IncomingPhoneNumbers/{pn}", s.deleteIncoming)
	mux.HandleFunc("POST /2010-04-01/Accounts/{acct}/Calls.json", s.createCall)
	mux.HandleFunc("POST /2010-04-01/Accounts/{acct}/Calls/{sid}", s.updateCall)
	mux.HandleFunc("GET /v2/PhoneNumbers/{num}", s.fetchRoute)
	mux.HandleFunc("POST /v2/PhoneNumbers/{num}", s.updateRoute)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		rec := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Host: r.Host}
		if h := r.Header.Get("X-Forwarded-Host"); h != "" {
			rec.Host = h
		}
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			rec.Form, _ = url.ParseQuery(string(body))
			r.Body = io.NopCloser(strings.NewReader(string(body)))
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
					sw.status = 499 // client gave up
					return
				case <-s.done:
					t.Stop()
					return
				}
			}
			if f.Status != 0 {
				code, msg := f.Code, f.Message
				if code == 0 {
					code = 20500
				}
				if msg == "" {
					msg = "An internal server error has occurred"
				}
				writeError(sw, f.Status, code, msg)
				return
			}
		}
		user, pass, ok := r.BasicAuth()
		if !ok || user != s.opts.AccountSID || pass != s.opts.AuthToken {
			sw.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
			writeError(sw, http.StatusUnauthorized, 20003, "Authenticate")
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

// account checks the {acct} path segment ("AC....json" or "AC...").
func (s *Server) account(w http.ResponseWriter, r *http.Request) bool {
	acct := strings.TrimSuffix(r.PathValue("acct"), ".json")
	if acct != s.opts.AccountSID {
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
		return false
	}
	return true
}

const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

func (s *Server) fetchAccount(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.PathValue("acct"), ".json") {
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
		return
	}
	if !s.account(w, r) {
		return
	}
	sid := s.opts.AccountSID
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Format(dateLayout)
	writeJSON(w, http.StatusOK, map[string]any{
		"auth_token":        s.opts.AuthToken,
		"date_created":      now,
		"date_updated":      now,
		"friendly_name":     "callgate fake account",
		"owner_account_sid": sid,
		"sid":               sid,
		"status":            "active",
		"type":              "Full",
		"uri":               "/2010-04-01/Accounts/" + sid + ".json",
		"subresource_uris": map[string]string{
			"available_phone_numbers": "/2010-04-01/Accounts/" + sid + "/AvailablePhoneNumbers.json",
			"incoming_phone_numbers":  "/2010-04-01/Accounts/" + sid + "/IncomingPhoneNumbers.json",
		},
	})
}

// page parses Page and PageSize (Twilio: default 50, max 1000).
func page(q url.Values) (pg, size int, err error) {
	size = 50
	if v := q.Get("PageSize"); v != "" {
		size, err = strconv.Atoi(v)
		if err != nil || size < 1 || size > 1000 {
			return 0, 0, fmt.Errorf("PageSize must be between 1 and 1000")
		}
	}
	if v := q.Get("Page"); v != "" {
		pg, err = strconv.Atoi(v)
		if err != nil || pg < 0 {
			return 0, 0, fmt.Errorf("Page must be a non-negative integer")
		}
	}
	return pg, size, nil
}

// pageURIs builds uri, first_page_uri, next_page_uri and previous_page_uri
// for page pg of a list of total items, keeping the filters in keep.
func pageURIs(path string, keep url.Values, pg, size, total int) map[string]any {
	mk := func(p int) string {
		v := url.Values{}
		for k, vs := range keep {
			v[k] = vs
		}
		v.Set("PageSize", strconv.Itoa(size))
		v.Set("Page", strconv.Itoa(p))
		if p > 0 {
			v.Set("PageToken", fmt.Sprintf("PA%d", p))
		}
		return path + "?" + v.Encode()
	}
	start := pg * size
	end := start + size
	if end > total {
		end = total
	}
	if start > total {
		start = total
	}
	m := map[string]any{
		"page":              pg,
		"page_size":         size,
		"start":             start,
		"end":               max(end-1, start),
		"uri":               mk(pg),
		"first_page_uri":    mk(0),
		"next_page_uri":     nil,
		"previous_page_uri": nil,
	}
	if end < total {
		m["next_page_uri"] = mk(pg + 1)
	}
	if pg > 0 {
		m["previous_page_uri"] = mk(pg - 1)
	}
	return m
}

func validAreaCode(ac string) bool {
	if len(ac) != 3 || ac[0] < '2' || ac[0] > '9' {
		return false
	}
	for i := 0; i < 3; i++ {
		if ac[i] < '0' || ac[i] > '9' {
			return false
		}
	}
	return true
}

func (s *Server) searchNumbers(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	cc := r.PathValue("cc")
	var typ string
	switch r.PathValue("kind") {
	case "Local.json":
		typ = TypeLocal
	case "Mobile.json":
		typ = TypeMobile
	case "TollFree.json":
		typ = TypeTollFree
	case "National.json":
		typ = TypeNational
	default:
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
		return
	}
	if len(cc) != 2 || strings.ToUpper(cc) != cc {
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
		return
	}
	q := r.URL.Query()
	pg, size, err := page(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, 20001, err.Error())
		return
	}
	ac := q.Get("AreaCode")
	if ac != "" && !validAreaCode(ac) {
		writeError(w, http.StatusBadRequest, 21452, fmt.Sprintf("AreaCode %s is not valid", ac))
		return
	}
	want := func(name string) (bool, bool) {
		v := q.Get(name)
		if v == "" {
			return false, false
		}
		return v == "true", true
	}
	s.mu.Lock()
	var matches []Number
	for _, n := range s.inventory {
		if n.Country != cc || n.Type != typ {
			continue
		}
		if ac != "" && !(strings.HasPrefix(n.PhoneNumber, "+1") && strings.HasPrefix(n.PhoneNumber[2:], ac)) {
			continue
		}
		if v, set := want("VoiceEnabled"); set && v && !n.Voice {
			continue
		}
		if v, set := want("SmsEnabled"); set && v && !n.SMS {
			continue
		}
		if v, set := want("MmsEnabled"); set && v && !n.MMS {
			continue
		}
		matches = append(matches, n)
	}
	s.mu.Unlock()
	keep := url.Values{}
	for _, k := range []string{"AreaCode", "VoiceEnabled", "SmsEnabled", "MmsEnabled"} {
		if v := q.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	resp := pageURIs(r.URL.Path, keep, pg, size, len(matches))
	items := []map[string]any{}
	for i := pg * size; i < len(matches) && i < (pg+1)*size; i++ {
		n := matches[i]
		items = append(items, map[string]any{
			"friendly_name":        friendly(n.PhoneNumber),
			"phone_number":         n.PhoneNumber,
			"lata":                 "722",
			"rate_center":          strings.ToUpper(n.Locality),
			"latitude":             "37.780000",
			"longitude":            "-122.420000",
			"locality":             n.Locality,
			"region":               n.Region,
			"postal_code":          "94103",
			"iso_country":          n.Country,
			"address_requirements": "none",
			"beta":                 false,
			"capabilities":         map[string]bool{"voice": n.Voice, "SMS": n.SMS, "MMS": n.MMS, "fax": false},
		})
	}
	resp["available_phone_numbers"] = items
	writeJSON(w, http.StatusOK, resp)
}

func friendly(e164 string) string {
	if strings.HasPrefix(e164, "+1") && len(e164) == 12 {
		d := e164[2:]
		return fmt.Sprintf("(%s) %s-%s", d[:3], d[3:6], d[6:])
	}
	return e164
}

func (s *Server) incomingJSON(n *Number) map[string]any {
	uri := fmt.Sprintf("/2010-04-01/Accounts/%s/IncomingPhoneNumbers/%s.json", s.opts.AccountSID, n.SID)
	date := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Format(dateLayout)
	method := func(m string) string {
		if m == "" {
			return "POST"
		}
		return m
	}
	fn := n.FriendlyName
	if fn == "" {
		fn = friendly(n.PhoneNumber)
	}
	return map[string]any{
		"account_sid":              s.opts.AccountSID,
		"address_requirements":     "none",
		"address_sid":              nil,
		"api_version":              "2010-04-01",
		"beta":                     false,
		"bundle_sid":               nil,
		"capabilities":             map[string]bool{"voice": n.Voice, "sms": n.SMS, "mms": n.MMS, "fax": false},
		"date_created":             date,
		"date_updated":             date,
		"emergency_address_sid":    nil,
		"emergency_address_status": "unregistered",
		"emergency_status":         "Inactive",
		"friendly_name":            fn,
		"identity_sid":             nil,
		"origin":                   "twilio",
		"phone_number":             n.PhoneNumber,
		"sid":                      n.SID,
		"sms_application_sid":      n.SMSApplicationSID,
		"sms_fallback_method":      "POST",
		"sms_fallback_url":         "",
		"sms_method":               method(n.SMSMethod),
		"sms_url":                  n.SMSURL,
		"status":                   "in-use",
		"status_callback":          n.StatusCallback,
		"status_callback_method":   "POST",
		"subresource_uris":         map[string]string{"assigned_add_ons": strings.TrimSuffix(uri, ".json") + "/AssignedAddOns.json"},
		"trunk_sid":                nullable(n.TrunkSID),
		"uri":                      uri,
		"voice_application_sid":    n.VoiceApplicationSID,
		"voice_caller_id_lookup":   false,
		"voice_fallback_method":    "POST",
		"voice_fallback_url":       "",
		"voice_method":             method(n.VoiceMethod),
		"voice_receive_mode":       "voice",
		"voice_url":                n.VoiceURL,
		"type":                     n.Type,
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Server) listIncoming(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	q := r.URL.Query()
	pg, size, err := page(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, 20001, err.Error())
		return
	}
	filter := q.Get("PhoneNumber")
	s.mu.Lock()
	var matches []map[string]any
	for _, n := range s.owned {
		if filter != "" && !strings.Contains(n.PhoneNumber, strings.TrimPrefix(filter, "+")) {
			continue
		}
		matches = append(matches, s.incomingJSON(n))
	}
	s.mu.Unlock()
	keep := url.Values{}
	if filter != "" {
		keep.Set("PhoneNumber", filter)
	}
	resp := pageURIs(r.URL.Path, keep, pg, size, len(matches))
	items := []map[string]any{}
	for i := pg * size; i < len(matches) && i < (pg+1)*size; i++ {
		items = append(items, matches[i])
	}
	resp["incoming_phone_numbers"] = items
	writeJSON(w, http.StatusOK, resp)
}

// applyForm copies the settable IncomingPhoneNumber parameters present in f.
func applyForm(n *Number, f url.Values) {
	set := func(key string, dst *string) {
		if vs, ok := f[key]; ok && len(vs) > 0 {
			*dst = vs[0]
		}
	}
	set("FriendlyName", &n.FriendlyName)
	set("VoiceUrl", &n.VoiceURL)
	set("VoiceMethod", &n.VoiceMethod)
	set("SmsUrl", &n.SMSURL)
	set("SmsMethod", &n.SMSMethod)
	set("StatusCallback", &n.StatusCallback)
	set("SmsApplicationSid", &n.SMSApplicationSID)
	// Twilio: setting a voice_application_sid deletes the trunk_sid and vice versa.
	if vs, ok := f["VoiceApplicationSid"]; ok && len(vs) > 0 {
		n.VoiceApplicationSID = vs[0]
		if vs[0] != "" {
			n.TrunkSID = ""
		}
	}
	if vs, ok := f["TrunkSid"]; ok && len(vs) > 0 {
		n.TrunkSID = vs[0]
		if vs[0] != "" {
			n.VoiceApplicationSID = ""
		}
	}
}

func validMethod(f url.Values) error {
	for _, k := range []string{"VoiceMethod", "SmsMethod"} {
		if v := f.Get(k); v != "" && v != "GET" && v != "POST" {
			return fmt.Errorf("%s must be GET or POST", k)
		}
	}
	for _, k := range []string{"VoiceUrl", "SmsUrl", "StatusCallback"} {
		if v := f.Get(k); v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%s is not valid", k)
			}
		}
	}
	return nil
}

func (s *Server) createIncoming(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	_ = r.ParseForm()
	pn := r.PostForm.Get("PhoneNumber")
	if pn == "" {
		writeError(w, http.StatusBadRequest, 21450, "A 'PhoneNumber' or 'AreaCode' is required")
		return
	}
	if err := validMethod(r.PostForm); err != nil {
		writeError(w, http.StatusBadRequest, 21502, err.Error())
		return
	}
	s.mu.Lock()
	idx := -1
	for i, n := range s.inventory {
		if n.PhoneNumber == pn {
			idx = i
			break
		}
	}
	if idx < 0 {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, 21422, fmt.Sprintf("PhoneNumber %s is not available", pn))
		return
	}
	n := s.inventory[idx]
	s.inventory = append(s.inventory[:idx], s.inventory[idx+1:]...)
	n.SID = newSID("PN")
	applyForm(&n, r.PostForm)
	s.owned = append(s.owned, &n)
	body := s.incomingJSON(&n)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, body)
}

// findSID returns the owned number with SID pn ("PN....json"); mu held.
func (s *Server) findSID(pn string) (int, *Number) {
	if !strings.HasSuffix(pn, ".json") {
		return -1, nil
	}
	sid := strings.TrimSuffix(pn, ".json")
	for i, n := range s.owned {
		if n.SID == sid {
			return i, n
		}
	}
	return -1, nil
}

func (s *Server) fetchIncoming(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	s.mu.Lock()
	_, n := s.findSID(r.PathValue("pn"))
	if n == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
		return
	}
	body := s.incomingJSON(n)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) updateIncoming(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	_ = r.ParseForm()
	if err := validMethod(r.PostForm); err != nil {
		writeError(w, http.StatusBadRequest, 21502, err.Error())
		return
	}
	s.mu.Lock()
	_, n := s.findSID(r.PathValue("pn"))
	if n == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
		return
	}
	applyForm(n, r.PostForm)
	body := s.incomingJSON(n)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) deleteIncoming(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	s.mu.Lock()
	i, n := s.findSID(r.PathValue("pn"))
	if n == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
		return
	}
	s.owned = append(s.owned[:i], s.owned[i+1:]...)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) routeJSON(n *Number) map[string]any {
	region := n.VoiceRegion
	if region == "" {
		region = "us1"
	}
	date := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
	return map[string]any{
		"phone_number":  n.PhoneNumber,
		"url":           "https://routes.twilio.com/v2/PhoneNumbers/" + n.PhoneNumber,
		"sid":           "QQ" + strings.TrimPrefix(n.SID, "PN"),
		"account_sid":   s.opts.AccountSID,
		"friendly_name": nil,
		"voice_region":  region,
		"date_created":  date,
		"date_updated":  date,
	}
}

func (s *Server) routeNumber(r *http.Request) *Number {
	num := r.PathValue("num")
	for _, n := range s.owned {
		if n.PhoneNumber == num || n.SID == num {
			return n
		}
	}
	return nil
}

func (s *Server) fetchRoute(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := s.routeNumber(r)
	if n == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
		return
	}
	body := s.routeJSON(n)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) updateRoute(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	region := r.PostForm.Get("VoiceRegion")
	if _, ok := r.PostForm["VoiceRegion"]; ok {
		switch region {
		case "us1", "ie1", "au1":
		default:
			writeError(w, http.StatusBadRequest, 21608, fmt.Sprintf("VoiceRegion %q is not valid", region))
			return
		}
	}
	s.mu.Lock()
	n := s.routeNumber(r)
	if n == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
		return
	}
	if region != "" {
		n.VoiceRegion = region
	}
	body := s.routeJSON(n)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func newSID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// SortedPhoneNumbers returns the E.164 numbers of ns, sorted (test helper).
func SortedPhoneNumbers(ns []Number) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.PhoneNumber
	}
	sort.Strings(out)
	return out
}

// DemoOptions is a ready-made account for walking the import and purchase
// flows by hand: three numbers already pointed at the customer's own app,
// and local (415, 212), mobile and toll-free numbers for sale.
func DemoOptions() Options {
	owned := []Number{
		{PhoneNumber: "+14155550101", Region: "CA", Locality: "San Francisco", Voice: true, SMS: true, MMS: true,
			VoiceURL: "https://customer.example/voice", VoiceMethod: "POST", SMSURL: "https://customer.example/sms", SMSMethod: "POST"},
		{PhoneNumber: "+14155550102", Region: "CA", Locality: "San Francisco", Voice: true, SMS: true,
			VoiceURL: "https://customer.example/voice", VoiceMethod: "POST"},
		{PhoneNumber: "+12125550103", Region: "NY", Locality: "New York", Voice: true,
			TrunkSID: "TK00000000000000000000000000000001"},
	}
	inv := GenerateInventory("415", TypeLocal, 10)
	inv = append(inv, GenerateInventory("212", TypeLocal, 10)...)
	inv = append(inv, GenerateInventory("628", TypeMobile, 3)...)
	inv = append(inv, GenerateInventory("800", TypeTollFree, 5)...)
	return Options{Owned: owned, Inventory: inv}
}
