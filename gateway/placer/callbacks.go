package placer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/webhook"
	"github.com/callgate/callgate/provisioning/carrier/telnyx"
	"github.com/callgate/callgate/routing"
)

// maxCallbackBody caps a carrier callback's body.
const maxCallbackBody = 64 << 10

// Handler serves the carriers' reports on placed calls under
// CallbackPath: Twilio status callbacks (X-Twilio-Signature with the
// number's integration's auth token) and Telnyx Call Control webhooks
// (Ed25519 with the integration's public key). Unsigned or badly signed
// requests get 403 and change nothing.
func (p *Placer) Handler() http.Handler {
	return p.handler()
}

// callback counts a carrier report's outcome.
func (p *Placer) callback(carrier, outcome string) {
	if p.d.Metrics != nil {
		p.d.Metrics.Callbacks.WithLabelValues(carrier, outcome).Inc()
	}
}

func (p *Placer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+twilioStatusPath, p.twilioStatus)
	mux.HandleFunc("POST "+telnyxEventsPath, p.telnyxEvent)
	return http.TimeoutHandler(mux, 15*time.Second, "timeout")
}

// integrationOf returns the integration of a workspace's number.
func integrationOf(snap *routing.Snapshot, ws, number string) (routing.Integration, bool) {
	rt, ok := snap.Lookup(number)
	if !ok || rt.Number.Workspace != ws || rt.Number.IntegrationID == "" {
		return routing.Integration{}, false
	}
	it, ok := snap.Integration(rt.Number.IntegrationID)
	return it, ok && it.Workspace == ws
}

func (p *Placer) twilioStatus(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxCallbackBody)
	if err := r.ParseForm(); err != nil {
		p.callback("twilio", "invalid")
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	st := stateFromQuery(r.URL.Query())
	snap := p.d.Table.Load()
	it, ok := integrationOf(snap, st.WS, st.Number)
	if !ok || it.AuthToken == "" {
		p.callback("twilio", "refused")
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	full := p.cfg.PublicURL + r.URL.RequestURI()
	if err := webhook.VerifyTwilio(it.AuthToken, full, r.Header.Get("X-Twilio-Signature"), r.PostForm, nil); err != nil {
		p.callback("twilio", "refused")
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	p.callback("twilio", "accepted")
	c := Call{ID: st.ID, From: st.From, To: st.To, AgentID: st.Agent, Carrier: "twilio"}
	switch status := r.PostForm.Get("CallStatus"); status {
	case "in-progress":
		p.track(carrierCall{carrier: "twilio", integration: it.ID, ref: r.PostForm.Get("CallSid"), st: st})
		p.answered(c, st)
	case "completed", "busy", "no-answer", "failed", "canceled":
		reason := strings.ReplaceAll(status, "-", "_")
		if status == "completed" {
			reason = "completed"
		}
		p.ended(c, st, reason)
	}
	w.WriteHeader(http.StatusNoContent)
}

// answered and ended are run once per call (carriers retry callbacks);
// answered reports whether this was the first time.
func (p *Placer) answered(c Call, st callState) bool {
	if _, dup := p.seen.LoadOrStore(c.ID+"/answered", time.Now()); dup {
		return false
	}
	now := time.Now()
	if p.d.Usage != nil {
		p.d.Usage.Answered(c.ID, st.WS, c.To, now)
	}
	p.d.Events.Publish(p.event(calls.Answered, c, st.WS, st.Number, st.Endpoint, st.FwdFrom))
	return true
}

func (p *Placer) ended(c Call, st callState, reason string) { p.endedWith(c, st, reason, nil) }

// endedWith is ended with the relay's media figures (nil: not relayed).
func (p *Placer) endedWith(c Call, st callState, reason string, media any) {
	if _, dup := p.seen.LoadOrStore(c.ID+"/ended", time.Now()); dup {
		return
	}
	p.untrack(c.ID)
	if r, ok := p.cutReason(c.ID); ok {
		reason = r // the carrier reports the hangup EndCall asked for
	}
	if p.d.Usage != nil {
		p.d.Usage.Ended(c.ID, time.Now())
	}
	p.release(st.WS)
	e := p.event(calls.Ended, c, st.WS, st.Number, st.Endpoint, st.FwdFrom)
	e.Reason, e.Media = reason, media
	p.d.Events.Publish(e)
	p.forget(c.ID)
}

// forget drops a finished call's dedup entries after a while.
func (p *Placer) forget(id string) {
	time.AfterFunc(10*time.Minute, func() {
		p.seen.Delete(id + "/answered")
		p.seen.Delete(id + "/ended")
	})
}

type telnyxWebhook struct {
	Data struct {
		EventType string `json:"event_type"`
		Payload   struct {
			CallControlID string `json:"call_control_id"`
			ClientState   string `json:"client_state"`
			HangupCause   string `json:"hangup_cause"`
		} `json:"payload"`
	} `json:"data"`
}

// transfers are the Telnyx transfers in flight (Close waits for them).
var transferTimeout = 10 * time.Second

func (p *Placer) telnyxEvent(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCallbackBody))
	if err != nil {
		p.callback("telnyx", "invalid")
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	var ev telnyxWebhook
	if err := json.Unmarshal(body, &ev); err != nil {
		p.callback("telnyx", "invalid")
		http.Error(w, "bad JSON", http.StatusBadRequest)
		return
	}
	var st callState
	raw, err := base64.StdEncoding.DecodeString(ev.Data.Payload.ClientState)
	if err != nil || json.Unmarshal(raw, &st) != nil || st.ID == "" {
		p.callback("telnyx", "refused")
		http.Error(w, "forbidden", http.StatusForbidden) // not a call callgate placed
		return
	}
	it, ok := integrationOf(p.d.Table.Load(), st.WS, st.Number)
	if !ok {
		p.callback("telnyx", "refused")
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if err := webhook.VerifyTelnyx(it.PublicKey, r.Header.Get("telnyx-signature-ed25519"), r.Header.Get("telnyx-timestamp"),
		body, time.Now(), webhook.DefaultTimestampTolerance); err != nil {
		p.callback("telnyx", "refused")
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	p.callback("telnyx", "accepted")
	c := Call{ID: st.ID, From: st.From, To: st.To, AgentID: st.Agent, Carrier: "telnyx"}
	switch ev.Data.EventType {
	case "call.answered":
		p.track(carrierCall{carrier: "telnyx", integration: it.ID, ref: ev.Data.Payload.CallControlID, st: st})
		// The answered event goes out before the transfer starts: a
		// transfer that fails ends the call, and its ended event must
		// follow the answered one.
		if p.answered(c, st) {
			p.transfers.Add(1)
			go func() {
				defer p.transfers.Done()
				p.transferTelnyx(it.ID, ev.Data.Payload.CallControlID, st)
			}()
		}
	case "call.hangup":
		reason := ev.Data.Payload.HangupCause
		if reason == "" || reason == "normal_clearing" {
			reason = "completed"
		}
		p.ended(c, st, reason)
	}
	w.WriteHeader(http.StatusOK)
}

// transferTelnyx bridges the answered callee to the agent's endpoint.
func (p *Placer) transferTelnyx(integrationID, callControlID string, st callState) {
	ctx, cancel := context.WithTimeout(context.Background(), transferTimeout)
	defer cancel()
	c, err := p.adapter(ctx, st.WS, integrationID)
	if err != nil {
		p.log.Warn("placer: telnyx transfer: integration", "call_id", st.ID, "err", err)
		return
	}
	tc, ok := c.(telnyxCaller)
	if !ok {
		return
	}
	hs := []telnyx.SIPHeader{{Name: "X-Callgate-Number", Value: st.Number}, {Name: "X-Callgate-Agent", Value: st.Agent},
		{Name: "X-Callgate-Region", Value: st.Region}, {Name: "X-Callgate-Call-Id", Value: st.ID}, {Name: "X-Callgate-Direction", Value: calls.Outbound}}
	if st.FwdFrom != "" {
		hs = append(hs, telnyx.SIPHeader{Name: "X-Callgate-Forwarded-From", Value: st.FwdFrom})
	}
	if err := tc.Transfer(ctx, telnyx.TransferParams{CallControlID: callControlID, To: st.Endpoint, Headers: hs, CommandID: st.ID + "-transfer"}); err != nil {
		// The callee must not wait in silence: hang up, and the call ends
		// here (the call.hangup that follows is a duplicate).
		p.log.Warn("placer: telnyx transfer to the agent failed; hanging up", "call_id", st.ID, "err", err)
		p.ended(Call{ID: st.ID, From: st.From, To: st.To, AgentID: st.Agent, Carrier: "telnyx"}, st, "agent_transfer_failed")
		if err := tc.Hangup(ctx, callControlID, st.ID+"-hangup"); err != nil {
			p.log.Warn("placer: telnyx hangup failed", "call_id", st.ID, "err", err)
		}
	}
}

// wait is a WaitGroup (named so that Placer's zero value works).
type wait = sync.WaitGroup
