package twiliofake

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
)

// Call is an outbound call created through the Calls API
// (POST /2010-04-01/Accounts/{AccountSid}/Calls.json).
type Call struct {
	SID                  string
	From, To             string
	Twiml                string
	URL                  string
	StatusCallback       string
	StatusCallbackMethod string
	StatusCallbackEvents []string
	Timeout              int
	Status               string // queued, ringing, in-progress, completed, ...
	Direction            string // outbound-api (created here) or inbound (Inbound)
	// Updates are the Status values of update requests (POST
	// .../Calls/{Sid}.json), in order.
	Updates []string
	// TwimlUpdates are the Twiml values of update requests that gave one
	// (a redirect: Twilio runs it on the live call), in order.
	TwimlUpdates []string
	Created      time.Time
	seq          int
}

// Calls returns the calls created so far, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		out[i] = *c
		out[i].Updates = append([]string(nil), c.Updates...)
		out[i].TwimlUpdates = append([]string(nil), c.TwimlUpdates...)
	}
	return out
}

func (s *Server) callJSON(c *Call) map[string]any {
	uri := "/2010-04-01/Accounts/" + s.opts.AccountSID + "/Calls/" + c.SID + ".json"
	date := c.Created.Format(dateLayout)
	return map[string]any{
		"account_sid": s.opts.AccountSID, "annotation": nil, "answered_by": nil, "api_version": "2010-04-01",
		"caller_name": nil, "date_created": date, "date_updated": date, "direction": c.Direction,
		"duration": nil, "end_time": nil, "forwarded_from": nil, "from": c.From, "from_formatted": friendly(c.From),
		"group_sid": nil, "parent_call_sid": nil, "phone_number_sid": s.ownedSID(c.From), "price": nil, "price_unit": "USD",
		"queue_time": "0", "sid": c.SID, "start_time": nil, "status": c.Status, "to": c.To, "to_formatted": friendly(c.To),
		"trunk_sid": nil, "uri": uri,
		"subresource_uris": map[string]string{
			"notifications": strings.TrimSuffix(uri, ".json") + "/Notifications.json",
			"recordings":    strings.TrimSuffix(uri, ".json") + "/Recordings.json",
			"events":        strings.TrimSuffix(uri, ".json") + "/Events.json",
		},
	}
}

func (s *Server) ownedSID(e164 string) any {
	for _, n := range s.owned {
		if n.PhoneNumber == e164 {
			return n.SID
		}
	}
	return nil
}

// createCall answers as Twilio does: To and From required (21201, 21213),
// one of Url, Twiml or ApplicationSid (21205), To a valid number (21211),
// From a number of the account (21210), then 201 with the Call resource
// in status "queued".
func (s *Server) createCall(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, 20001, "Invalid form body")
		return
	}
	f := r.PostForm
	to, from := strings.TrimSpace(f.Get("To")), strings.TrimSpace(f.Get("From"))
	switch {
	case to == "":
		writeError(w, http.StatusBadRequest, 21201, "No 'To' number is specified")
		return
	case from == "":
		writeError(w, http.StatusBadRequest, 21213, "No 'From' number is specified")
		return
	case f.Get("Url") == "" && f.Get("Twiml") == "" && f.Get("ApplicationSid") == "":
		writeError(w, http.StatusBadRequest, 21205, "Either a 'Url', 'ApplicationSid' or 'Twiml' parameter is required")
		return
	}
	if !strings.HasPrefix(to, "sip:") && !strings.HasPrefix(to, "client:") {
		pn, err := phonenumbers.Parse(to, "US")
		if err != nil || !phonenumbers.IsValidNumber(pn) {
			writeError(w, http.StatusBadRequest, 21211, fmt.Sprintf("Invalid 'To' Phone Number: %s", to))
			return
		}
	}
	if f.Get("Timeout") != "" {
		if n, err := strconv.Atoi(f.Get("Timeout")); err != nil || n < 1 || n > 600 {
			writeError(w, http.StatusBadRequest, 21212, "Timeout must be between 1 and 600")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ownedSID(from) == nil {
		writeError(w, http.StatusBadRequest, 21210, fmt.Sprintf("The source phone number provided, %s, is not yet verified for your account. You may only make calls from phone numbers that you've verified or purchased from Twilio.", from))
		return
	}
	c := &Call{SID: newSID("CA"), From: from, To: to, Twiml: f.Get("Twiml"), URL: f.Get("Url"),
		StatusCallback: f.Get("StatusCallback"), StatusCallbackMethod: f.Get("StatusCallbackMethod"),
		StatusCallbackEvents: f["StatusCallbackEvent"], Status: "queued", Direction: "outbound-api", Created: time.Now().UTC()}
	if c.StatusCallbackMethod == "" {
		c.StatusCallbackMethod = http.MethodPost
	}
	c.Timeout, _ = strconv.Atoi(f.Get("Timeout"))
	s.calls = append(s.calls, c)
	writeJSON(w, http.StatusCreated, s.callJSON(c))
}

// Inbound makes a call from a caller to one of the account's numbers, as
// Twilio does when a call arrives: it is in progress (running the TwiML the
// voice webhook answered) until Hangup, and can be updated (redirected) by
// its sid. The voice webhook itself is the test's to send, signed with
// Signature. It returns the call's sid (CA...).
func (s *Server) Inbound(from, to string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &Call{SID: newSID("CA"), From: from, To: to, Status: "in-progress", Direction: "inbound", Created: time.Now().UTC()}
	s.calls = append(s.calls, c)
	return c.SID
}

// Hangup ends a call as the caller hanging up does: its status becomes
// completed (no callback is sent).
func (s *Server) Hangup(sid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.calls {
		if c.SID == sid {
			c.Status = "completed"
		}
	}
}

// Progress moves a call to status (ringing, in-progress, completed, busy,
// no-answer, failed) and, when the call asked for that event in
// StatusCallbackEvent (completed always), POSTs Twilio's status callback
// to its StatusCallback, signed with X-Twilio-Signature. It returns the
// callback's HTTP status (0 when none was sent).
func (s *Server) Progress(ctx context.Context, sid, status string, duration time.Duration) (int, error) {
	s.mu.Lock()
	var c *Call
	for _, x := range s.calls {
		if x.SID == sid {
			c = x
		}
	}
	if c == nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("twiliofake: no call %s", sid)
	}
	c.Status = status
	c.seq++
	seq := c.seq - 1
	event := map[string]string{"ringing": "ringing", "in-progress": "answered"}[status]
	if event == "" {
		event = "completed"
	}
	wanted := event == "completed"
	for _, e := range c.StatusCallbackEvents {
		for _, x := range strings.Fields(e) {
			if x == event {
				wanted = true
			}
		}
	}
	cb, method := c.StatusCallback, c.StatusCallbackMethod
	form := url.Values{
		"AccountSid": {s.opts.AccountSID}, "ApiVersion": {"2010-04-01"}, "CallSid": {c.SID}, "CallStatus": {status},
		"Called": {c.To}, "Caller": {c.From}, "Direction": {"outbound-api"}, "From": {c.From}, "To": {c.To},
		"CallbackSource": {"call-progress-events"}, "SequenceNumber": {strconv.Itoa(seq)},
		"Timestamp": {time.Now().UTC().Format(dateLayout)},
	}
	if event == "completed" {
		form.Set("CallDuration", strconv.Itoa(int(duration/time.Second)))
		form.Set("Duration", strconv.Itoa(int((duration+time.Minute-1)/time.Minute)))
	}
	s.mu.Unlock()
	if cb == "" || !wanted {
		return 0, nil
	}
	var req *http.Request
	var err error
	if strings.EqualFold(method, http.MethodGet) {
		u := cb
		if strings.Contains(u, "?") {
			u += "&" + form.Encode()
		} else {
			u += "?" + form.Encode()
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err == nil {
			req.Header.Set("X-Twilio-Signature", Signature(s.opts.AuthToken, u, nil))
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, cb, strings.NewReader(form.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Twilio-Signature", Signature(s.opts.AuthToken, cb, form))
		}
	}
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "TwilioProxy/1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Signature is X-Twilio-Signature as Twilio computes it: base64 of
// HMAC-SHA1(auth token, URL + each POST parameter's name and value, sorted
// by name).
func Signature(authToken, fullURL string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m := hmac.New(sha1.New, []byte(authToken))
	m.Write([]byte(fullURL))
	for _, k := range keys {
		vs := append([]string(nil), params[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			m.Write([]byte(k))
			m.Write([]byte(v))
		}
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// updateCall answers POST /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json
// as Twilio does for Status: 404 (20404) for an unknown sid; "completed"
// hangs up a call in any live state, "canceled" only a queued or ringing
// one (an answered call is left as it is); a call already over cannot be
// modified (400, 21220); then 200 with the Call resource. Twilio's
// completed status callback that follows is the test's to send (Progress).
func (s *Server) updateCall(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, 20001, "Invalid form body")
		return
	}
	sid := strings.TrimSuffix(r.PathValue("sid"), ".json")
	s.mu.Lock()
	defer s.mu.Unlock()
	var c *Call
	for _, x := range s.calls {
		if x.SID == sid {
			c = x
		}
	}
	if c == nil || !strings.HasSuffix(r.PathValue("sid"), ".json") {
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
		return
	}
	status := r.PostForm.Get("Status")
	if status != "" && status != "completed" && status != "canceled" {
		writeError(w, http.StatusBadRequest, 20001, fmt.Sprintf("Invalid Status: %s", status))
		return
	}
	live := c.Status == "queued" || c.Status == "ringing" || c.Status == "in-progress"
	if !live {
		writeError(w, http.StatusBadRequest, 21220, "Call is not in-progress. Cannot redirect.")
		return
	}
	if tw := r.PostForm.Get("Twiml"); tw != "" {
		c.TwimlUpdates = append(c.TwimlUpdates, tw)
	}
	c.Updates = append(c.Updates, status)
	switch {
	case status == "completed":
		c.Status = "completed"
	case status == "canceled" && c.Status != "in-progress":
		c.Status = "canceled"
	}
	writeJSON(w, http.StatusOK, s.callJSON(c))
}
