package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/hook"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

type nameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// telnyxCallEvent is the part of a Call Control webhook callgate reads.
type telnyxCallEvent struct {
	Data struct {
		EventType string `json:"event_type"`
		ID        string `json:"id"`
		Payload   struct {
			CallControlID  string      `json:"call_control_id"`
			CallLegID      string      `json:"call_leg_id"`
			CallSessionID  string      `json:"call_session_id"`
			ConnectionID   string      `json:"connection_id"`
			From           string      `json:"from"`
			To             string      `json:"to"`
			Direction      string      `json:"direction"`
			State          string      `json:"state"`
			SIPHeaders     []nameValue `json:"sip_headers"`
			HangupCause    string      `json:"hangup_cause"`
			SIPHangupCause string      `json:"sip_hangup_cause"`
		} `json:"payload"`
	} `json:"data"`
}

// telnyxMessageEvent is the part of a messaging webhook callgate reads.
type telnyxMessageEvent struct {
	Data struct {
		EventType string `json:"event_type"`
		ID        string `json:"id"`
		Payload   struct {
			ID   string `json:"id"`
			From struct {
				PhoneNumber string `json:"phone_number"`
			} `json:"from"`
			To []struct {
				PhoneNumber string `json:"phone_number"`
			} `json:"to"`
			Text  string `json:"text"`
			Media []struct {
				URL         string `json:"url"`
				ContentType string `json:"content_type"`
			} `json:"media"`
		} `json:"payload"`
	} `json:"data"`
}

// readTelnyx checks that the signature headers are there, reads the body
// and decodes it into v. It returns the body, a result and false when it
// already answered.
func (h *Handler) readTelnyx(w http.ResponseWriter, r *http.Request, v any) (*routing.Snapshot, []byte, func(), string, bool) {
	snap := h.table.Load()
	if snap == nil {
		return nil, nil, nil, notReady(w), false
	}
	if !hasSignature(true, r) {
		return nil, nil, nil, forbidden(w, ErrNoSignature), false
	}
	buf, err := h.readBody(w, r)
	if err != nil {
		return nil, nil, nil, bodyError(w, err), false
	}
	body := buf.Bytes()
	if err := json.Unmarshal(body, v); err != nil {
		putBuf(buf)
		return nil, nil, nil, badRequest(w, "malformed JSON body: %v", err), false
	}
	return snap, body, func() { putBuf(buf) }, "", true
}

// telnyxCallControl handles Call Control webhooks: call.initiated on an
// incoming call is answered 200 at once and then transferred to the
// agent's best endpoint (or rejected) through the Call Control API;
// call.answered and call.hangup become lifecycle events.
func (h *Handler) telnyxCallControl(w http.ResponseWriter, r *http.Request) string {
	var ev telnyxCallEvent
	snap, body, done, result, ok := h.readTelnyx(w, r, &ev)
	if !ok {
		return result
	}
	defer done()
	d, p := &ev.Data, &ev.Data.Payload
	if d.EventType == "" {
		return badRequest(w, "missing data.event_type")
	}
	if p.Direction != "" && p.Direction != "incoming" {
		// Our own transferred leg (to a SIP URI): nothing is done with
		// it, whoever signed it, so it is answered alike for any number.
		w.WriteHeader(http.StatusOK)
		return ResultIgnored
	}
	dec := h.decide(snap, &routing.Call{Called: p.To, Calling: p.From, Diversion: diversionURIs(p.SIPHeaders),
		Carrier: "telnyx", Trunk: p.ConnectionID, Source: SourceTelnyx, CallID: telnyxCallID(p.CallSessionID, p.CallControlID)})
	if err := h.verify(true, snap, r, nil, body, func() *routing.Number { return decisionNumber(&dec) }); err != nil {
		return forbidden(w, err)
	}
	if dec.Outcome == routing.OutcomeNotOurs {
		w.WriteHeader(http.StatusOK)
		return ResultUnknownNumber
	}
	base := calls.Event{
		CallID:    p.CallControlID,
		Time:      h.now(),
		Number:    dec.Number,
		Workspace: dec.Workspace,
		Region:    h.cfg.Region,
		Carrier:   "telnyx",
		Origin:    dec.Origin,
		Source:    SourceTelnyx,
		// the caller's leg: API transfers and digits act on it (gateway/placer webhookcalls.go)
		CarrierCallID: p.CallControlID,
	}
	if p.CallSessionID != "" {
		base.CallID = p.CallSessionID
	}
	if dec.Agent != nil {
		base.Agent = dec.Agent.ID
	}
	switch d.EventType {
	case "call.initiated":
		if p.CallControlID == "" {
			return badRequest(w, "call.initiated without data.payload.call_control_id")
		}
		w.WriteHeader(http.StatusOK)
		if dec.Outcome == routing.OutcomeRoute && h.overLimit(snap, &dec, base.CallID, "telnyx", SourceTelnyx) {
			h.queueReject(dec.Route.Number.IntegrationID, p.CallControlID, "USER_BUSY")
			return ResultLimited
		}
		if h.hook != nil && hook.Applies(&dec) { // asked in the transfer worker (hook.go)
			return h.routeTelnyxCallWithHook(snap, dec, p.CallControlID, p.From, base)
		}
		return h.routeTelnyxCall(&dec, p.CallControlID, base)
	case "call.answered":
		base.Kind = calls.Answered
	case "call.hangup":
		base.Kind = calls.Ended
		base.Reason = p.HangupCause
		if c, err := strconv.Atoi(p.SIPHangupCause); err == nil && c >= 100 && c <= 699 {
			base.Status = c
		}
	default:
		w.WriteHeader(http.StatusOK)
		return ResultIgnored
	}
	h.events.Publish(base)
	w.WriteHeader(http.StatusOK)
	return ResultOK
}

// routeTelnyxCall queues the transfer (or reject) of a parked call; the
// webhook has already been answered.
func (h *Handler) routeTelnyxCall(dec *routing.Decision, callControlID string, ev calls.Event, extra ...hook.Header) string {
	integration := dec.Route.Number.IntegrationID
	switch dec.Reason {
	case routing.ReasonNone:
	case routing.ReasonNoEndpoint:
		h.queueReject(integration, callControlID, "USER_BUSY")
		return ResultNoEndpoint
	default:
		h.queueReject(integration, callControlID, "CALL_REJECTED")
		return refusalResult(dec.Reason)
	}
	cands := dec.Candidates
	edgeEP, viaEdge := h.viaSIPEdge(dec)
	if viaEdge {
		cands = []routing.Endpoint{edgeEP}
	}
	transfers := make([]Transfer, len(cands))
	for i, ep := range cands {
		var hs []header
		if !viaEdge { // the SIP edge adds the X-Callgate headers itself
			hs = hookHeaders(agentHeaders(dec, ep), extra)
		}
		t := Transfer{
			IntegrationID: integration,
			CallControlID: callControlID,
			To:            ep.URI,
			CommandID:     "callgate-transfer-" + strconv.Itoa(i) + "-" + callControlID,
		}
		for _, x := range hs {
			t.Headers = append(t.Headers, SIPHeader(x))
		}
		transfers[i] = t
	}
	number := dec.Number
	if h.cc == nil || !h.transfers.enqueue(func(ctx context.Context) { h.transfer(ctx, number, transfers) }) {
		h.metrics.Transfers.WithLabelValues(OutcomeDropped).Inc()
		h.log.Warn("webhook: telnyx transfer not queued", "number", phone.Mask(number), "configured", h.cc != nil)
	}
	ev.Kind = calls.Started
	ev.Region = cands[0].Region
	h.events.Publish(ev)
	return ResultOK
}

// transfer tries the candidates in order until the API accepts one.
func (h *Handler) transfer(ctx context.Context, number string, ts []Transfer) {
	var err error
	for _, t := range ts {
		actx, cancel := context.WithTimeout(ctx, h.cfg.Telnyx.TransferTimeout)
		err = h.cc.Transfer(actx, t)
		cancel()
		if err == nil {
			h.metrics.Transfers.WithLabelValues(OutcomeOK).Inc()
			return
		}
		if ctx.Err() != nil {
			break
		}
	}
	h.metrics.Transfers.WithLabelValues(OutcomeFailed).Inc()
	h.log.Warn("webhook: telnyx transfer failed", "number", phone.Mask(number), "err", err)
}

func (h *Handler) queueReject(integration, callControlID, cause string) {
	if h.cc == nil {
		return
	}
	rj := Reject{IntegrationID: integration, CallControlID: callControlID, Cause: cause,
		CommandID: "callgate-reject-" + callControlID}
	h.transfers.enqueue(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, h.cfg.Telnyx.TransferTimeout)
		defer cancel()
		if err := h.cc.Reject(ctx, rj); err != nil {
			h.log.Warn("webhook: telnyx reject failed", "err", err)
		}
	})
}

// telnyxMessaging handles message.received: publish and deliver.
func (h *Handler) telnyxMessaging(w http.ResponseWriter, r *http.Request) string {
	var ev telnyxMessageEvent
	snap, body, done, result, ok := h.readTelnyx(w, r, &ev)
	if !ok {
		return result
	}
	defer done()
	p := &ev.Data.Payload
	if ev.Data.EventType != "message.received" {
		// Delivery receipts etc.: nothing is done with them, whoever
		// signed them, so they are answered alike for any number.
		w.WriteHeader(http.StatusOK)
		return ResultIgnored
	}
	if len(p.To) == 0 || p.To[0].PhoneNumber == "" {
		return badRequest(w, "message.received without data.payload.to[0].phone_number")
	}
	res := resolve(snap, p.To[0].PhoneNumber)
	if err := h.verify(true, snap, r, nil, body, res.number); err != nil {
		return forbidden(w, err)
	}
	if res.route == nil {
		w.WriteHeader(http.StatusOK)
		return ResultUnknownNumber
	}
	msg := Message{ID: p.ID, Carrier: "telnyx", From: p.From.PhoneNumber, To: res.route.Number.E164, Body: p.Text}
	if msg.ID == "" {
		msg.ID = ev.Data.ID
	}
	for i, m := range p.Media {
		if i == 10 {
			break
		}
		msg.Media = append(msg.Media, Media{URL: m.URL, ContentType: m.ContentType})
	}
	result = h.acceptMessage(res.route, msg)
	w.WriteHeader(http.StatusOK)
	return result
}

// diversionURIs returns the addresses in the Diversion headers of a
// call.initiated payload, newest first (RFC 5806: the top-most entry is
// the latest diversion), each as the URI inside <...> or the bare value.
func diversionURIs(hs []nameValue) []string {
	var out []string
	for _, hd := range hs {
		if !strings.EqualFold(hd.Name, "Diversion") {
			continue
		}
		for _, part := range splitTopLevel(hd.Value) {
			part = strings.TrimSpace(part)
			if i := strings.IndexByte(part, '<'); i >= 0 {
				if j := strings.IndexByte(part[i:], '>'); j > 0 {
					if u := strings.TrimSpace(part[i+1 : i+j]); u != "" {
						out = append(out, u)
					}
					continue
				}
			}
			if i := strings.IndexByte(part, ';'); i >= 0 {
				part = part[:i]
			}
			if part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// splitTopLevel splits a header value on commas outside <...> and quotes.
func splitTopLevel(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case '<':
			if !quoted {
				depth++
			}
		case '>':
			if !quoted && depth > 0 {
				depth--
			}
		case ',':
			if !quoted && depth == 0 {
				out = append(out, v[start:i])
				start = i + 1
			}
		}
	}
	return append(out, v[start:])
}
