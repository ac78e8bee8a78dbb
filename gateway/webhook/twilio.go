package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/hook"
	"github.com/callgate/callgate/routing"
)

// Event sources.
const (
	SourceTwilio = "twilio_webhook"
	SourceTelnyx = "telnyx_webhook"
)

// maxAttempts bounds the attempt query parameter of a Dial action URL.
const maxAttempts = 32

// parseJSONParams reads a flat JSON object whose string, number and
// boolean members become parameters.
func parseJSONParams(body []byte) (url.Values, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("malformed JSON body: %v", err)
	}
	v := make(url.Values, len(m))
	for k, raw := range m {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			v.Set(k, s)
			continue
		}
		switch t := strings.TrimSpace(string(raw)); {
		case t == "null":
		case t == "true" || t == "false" || (t != "" && (t[0] == '-' || (t[0] >= '0' && t[0] <= '9'))):
			v.Set(k, t)
		}
	}
	return v, nil
}

// attemptOf reads the attempt query parameter of a Dial action URL.
func attemptOf(r *http.Request) (int, error) {
	raw, ok := queryParam(r.RequestURI, "attempt")
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 || n > maxAttempts {
		return 0, fmt.Errorf("attempt=%q is not a number in 0..%d", raw, maxAttempts)
	}
	return n, nil
}

func (h *Handler) twilioVoice(w http.ResponseWriter, r *http.Request) string {
	return h.dialWebhook(w, r, false)
}

func (h *Handler) telnyxTeXML(w http.ResponseWriter, r *http.Request) string {
	return h.dialWebhook(w, r, true)
}

// hasSignature reports whether the request carries the carrier's
// signature headers at all.
func hasSignature(telnyx bool, r *http.Request) bool {
	if telnyx {
		return r.Header.Get("Telnyx-Signature-Ed25519") != "" && r.Header.Get("Telnyx-Timestamp") != ""
	}
	return r.Header.Get("X-Twilio-Signature") != ""
}

// formRequest is a form-encoded (or JSON with bodySHA256) webhook that
// was read and parsed; release returns its pooled buffers.
type formRequest struct {
	snap   *routing.Snapshot
	buf    *bytes.Buffer
	body   []byte
	params *form
}

func (f formRequest) release() {
	putForm(f.params)
	putBuf(f.buf)
}

// readForm checks that a snapshot is loaded and the signature header is
// there, then reads and parses the body. It returns a result and false
// when it already answered.
func (h *Handler) readForm(w http.ResponseWriter, r *http.Request, telnyx bool) (formRequest, string, bool) {
	snap := h.table.Load()
	if snap == nil {
		return formRequest{}, notReady(w), false
	}
	if !hasSignature(telnyx, r) {
		return formRequest{}, forbidden(w, ErrNoSignature), false
	}
	buf, err := h.readBody(w, r)
	if err != nil {
		return formRequest{}, bodyError(w, err), false
	}
	params := getForm()
	if err := params.parse(r.Header.Get("Content-Type"), buf.Bytes()); err != nil {
		putForm(params)
		putBuf(buf)
		return formRequest{}, badRequest(w, "%v", err), false
	}
	return formRequest{snap: snap, buf: buf, body: buf.Bytes(), params: params}, "", true
}

// dialWebhook answers a Twilio voice or Telnyx TeXML webhook with a
// document that bridges the call to the agent's best endpoint. With
// several candidates the <Dial> carries an action URL (?attempt=N) so
// that a failed or unanswered attempt moves on to the next candidate;
// busy, canceled and completed attempts end the call.
func (h *Handler) dialWebhook(w http.ResponseWriter, r *http.Request, telnyx bool) string {
	req, result, ok := h.readForm(w, r, telnyx)
	if !ok {
		return result
	}
	defer req.release()
	snap, body, params := req.snap, req.body, req.params
	to := params.Get("To")
	if to == "" {
		return badRequest(w, "missing To parameter")
	}
	attempt, err := attemptOf(r)
	if err != nil {
		return badRequest(w, "%v", err)
	}
	src, carrier := SourceTwilio, "twilio"
	if telnyx {
		src, carrier = SourceTelnyx, "telnyx"
	}
	call := routing.Call{Called: to, Calling: params.Get("From"), Carrier: carrier, Source: src, CallID: params.Get("CallSid")}
	if ff := params.Get("ForwardedFrom"); ff != "" {
		call.Diversion = []string{ff}
	}
	dec := h.decide(snap, &call)
	if err := h.verify(telnyx, snap, r, params, body, func() *routing.Number { return decisionNumber(&dec) }); err != nil {
		return forbidden(w, err)
	}
	if dec.Outcome == routing.OutcomeNotOurs {
		writeXML(w, twimlReject)
		return ResultUnknownNumber
	}
	var hookRes hook.Result
	if attempt == 0 { // the first webhook of a call asks the routing hook (hook.go)
		var asked bool
		if hookRes, asked = h.askHook(r.Context(), snap, &dec, params.Get("CallSid"), call.Calling); asked && hookRes.Reject {
			writeXML(w, twimlHookReject(hookRes.Status))
			return ResultHookReject
		}
	}
	if dec.Outcome == routing.OutcomeReject && dec.Reason != routing.ReasonNoEndpoint {
		writeXML(w, twimlReject)
		return refusalResult(dec.Reason)
	}
	if attempt > 0 {
		switch params.Get("DialCallStatus") {
		case "failed", "no-answer":
		default: // completed, answered, busy, canceled: the call is over
			writeXML(w, twimlHangup)
			return ResultOK
		}
	}
	cands := dec.Candidates
	if hookRes.Retargeted && len(cands) > 1 {
		// later attempts decide again without the hook: only the hook's first target
		cands = cands[:1]
	}
	if attempt >= len(cands) {
		if attempt == 0 {
			writeXML(w, twimlRejectBusy)
		} else {
			writeXML(w, twimlHangup)
		}
		return ResultNoEndpoint
	}
	if attempt == 0 && h.overLimit(snap, &dec, params.Get("CallSid"), carrier, src) {
		writeXML(w, twimlRejectBusy)
		return ResultLimited
	}
	ep := cands[attempt]
	hs := hookHeaders(agentHeaders(&dec, ep), hookRes.Headers)
	if edgeEP, ok := h.viaSIPEdge(&dec); ok {
		// The SIP edge adds the X-Callgate headers and fails over itself.
		ep, hs, cands = edgeEP, nil, cands[:attempt+1]
	}

	out := getBuf()
	defer putBuf(out)
	var scratch [512]byte
	edge := ""
	if !telnyx {
		edge = h.cfg.Twilio.Edges[ep.Region]
	}
	doc := dialDoc{
		answerOnBridge: !telnyx,
		ringSeconds:    int(h.cfg.Twilio.RingTimeout / time.Second),
		base:           h.cfg.PublicURL,
		target:         sipTarget(scratch[:0], ep.URI, edge, hs),
	}
	path := requestPath(r)
	if attempt+1 < len(cands) {
		doc.actionPath, doc.nextAttempt = path, attempt+1
	}
	if !telnyx {
		doc.statusPath = strings.TrimSuffix(path, "voice") + "status"
		doc.number, doc.agent, doc.region = dec.Number, agentOf(&dec), ep.Region
		doc.t0 = h.now().UnixMilli()
	}
	out.Write(doc.append(out.AvailableBuffer()))
	writeXML(w, out.Bytes())

	if attempt == 0 {
		h.events.Publish(calls.Event{
			Kind:      calls.Started,
			CallID:    params.Get("CallSid"),
			Time:      h.now(),
			Number:    dec.Number,
			Workspace: dec.Workspace,
			Agent:     agentOf(&dec),
			Region:    ep.Region,
			Carrier:   carrier,
			Origin:    dec.Origin,
			Source:    src,

			Direction: calls.Inbound, From: call.Calling, To: dec.Called, ForwardedFrom: dec.ForwardedFrom,
			Endpoint: ep.URI, HookOutcome: hookRes.Outcome,
			CarrierCallID: twilioParent(telnyx, params.Get("CallSid")),
		})
	}
	return ResultOK
}

// twilioParent is the carrier call id kept for a voice webhook call: the
// Twilio CallSid of the caller's (parent) call, which API transfers
// redirect (gateway/placer webhookcalls.go). TeXML calls get none: their
// progress is not followed (no status callback), so nothing acts on them.
func twilioParent(telnyx bool, callSid string) string {
	if telnyx {
		return ""
	}
	return callSid
}

// twilioStatus turns status callbacks into call lifecycle events. The
// <Sip> status callbacks callgate asks for carry number, agent, region and
// t0 (ms since the epoch at the voice webhook) in their signed URL; a
// number's own StatusCallback (To is the number) works too.
func (h *Handler) twilioStatus(w http.ResponseWriter, r *http.Request) string {
	req, result, ok := h.readForm(w, r, false)
	if !ok {
		return result
	}
	defer req.release()
	snap, body, params := req.snap, req.body, req.params
	q := r.URL.Query()
	number := q.Get("number")
	if number == "" {
		number = params.Get("To")
	}
	if number == "" {
		return badRequest(w, "missing To parameter")
	}
	if err := h.verify(false, snap, r, params, body, func() *routing.Number { return resolve(snap, number).number() }); err != nil {
		return forbidden(w, err)
	}
	status := params.Get("CallStatus")
	if status == "" {
		return badRequest(w, "missing CallStatus parameter")
	}
	res := resolve(snap, number)
	if res.route == nil {
		w.WriteHeader(http.StatusOK)
		return ResultUnknownNumber
	}
	ev := calls.Event{
		CallID:    params.Get("ParentCallSid"),
		Time:      h.now(),
		Number:    res.route.Number.E164,
		Workspace: res.route.Number.Workspace,
		Agent:     q.Get("agent"),
		Region:    q.Get("region"),
		Carrier:   "twilio",
		Origin:    res.route.Number.Origin,
		Source:    SourceTwilio,
	}
	if ev.CallID == "" {
		ev.CallID = params.Get("CallSid")
	}
	if ev.Agent == "" && res.route.Agent != nil {
		ev.Agent = res.route.Agent.ID
	}
	if ev.Region == "" {
		ev.Region = h.cfg.Region
	}
	switch status {
	case "in-progress", "answered":
		ev.Kind = calls.Answered
		if t0, err := strconv.ParseInt(q.Get("t0"), 10, 64); err == nil {
			if d := ev.Time.Sub(time.UnixMilli(t0)); d >= 0 && d < 24*time.Hour {
				ev.SetupMillis = float64(d) / float64(time.Millisecond)
			}
		}
	case "completed", "busy", "failed", "no-answer", "canceled":
		ev.Kind = calls.Ended
		ev.Reason = strings.ReplaceAll(status, "-", "_")
		ev.Status = twilioFinalStatus(status, params.Get("SipResponseCode"))
		if secs, err := strconv.Atoi(params.Get("CallDuration")); err == nil && secs >= 0 {
			ev.Duration = time.Duration(secs) * time.Second
		}
	default: // queued, initiated, ringing
		w.WriteHeader(http.StatusOK)
		return ResultIgnored
	}
	h.events.Publish(ev)
	w.WriteHeader(http.StatusOK)
	return ResultOK
}

// twilioFinalStatus is the SIP status of a finished call: Twilio's
// SipResponseCode when it sent one, else the usual code for the status.
func twilioFinalStatus(status, sipCode string) int {
	if c, err := strconv.Atoi(sipCode); err == nil && c >= 100 && c <= 699 {
		return c
	}
	switch status {
	case "completed":
		return 200
	case "busy":
		return 486
	case "no-answer":
		return 480
	case "canceled":
		return 487
	default:
		return 500
	}
}

// twilioSMS publishes an inbound message and queues its delivery to the
// agent's messaging URL; it answers an empty TwiML document.
func (h *Handler) twilioSMS(w http.ResponseWriter, r *http.Request) string {
	req, result, ok := h.readForm(w, r, false)
	if !ok {
		return result
	}
	defer req.release()
	snap, body, params := req.snap, req.body, req.params
	to := params.Get("To")
	if to == "" {
		return badRequest(w, "missing To parameter")
	}
	if err := h.verify(false, snap, r, params, body, func() *routing.Number { return resolve(snap, to).number() }); err != nil {
		return forbidden(w, err)
	}
	res := resolve(snap, to)
	if res.route == nil {
		writeXML(w, twimlEmpty)
		return ResultUnknownNumber
	}
	msg := Message{
		ID:      params.Get("MessageSid"),
		Carrier: "twilio",
		From:    params.Get("From"),
		To:      res.route.Number.E164,
		Body:    params.Get("Body"),
	}
	if msg.ID == "" {
		msg.ID = params.Get("SmsSid")
	}
	if n, err := strconv.Atoi(params.Get("NumMedia")); err == nil && n > 0 {
		for i := 0; i < n && i < 10; i++ {
			if u := params.Get("MediaUrl" + strconv.Itoa(i)); u != "" {
				msg.Media = append(msg.Media, Media{URL: u, ContentType: params.Get("MediaContentType" + strconv.Itoa(i))})
			}
		}
	}
	result = h.acceptMessage(res.route, msg)
	writeXML(w, twimlEmpty)
	return result
}
