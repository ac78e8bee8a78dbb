package placer

import (
	"context"
	"errors"
	"time"

	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/twilio"
)

// hangupTimeout bounds the carrier request that ends a call.
const hangupTimeout = 10 * time.Second

// liveCallTTL drops a carrier call this node placed or saw answered but
// whose end was reported to another node (no call outlives it).
const liveCallTTL = 24 * time.Hour

type twilioEnder interface {
	EndCall(ctx context.Context, sid string) (twilio.CallResult, error)
}

// carrierCall is a Twilio or Telnyx call this node can hang up.
type carrierCall struct {
	carrier     string // twilio or telnyx
	integration string
	ref         string // Twilio call sid; Telnyx call_control_id
	st          callState
	expire      *time.Timer // drops the entry after liveCallTTL
}

// track remembers a carrier call until it ends (placement or answered
// callback; the first one wins).
func (p *Placer) track(cc carrierCall) {
	if cc.ref == "" || cc.st.ID == "" {
		return
	}
	if _, had := p.live.Load(cc.st.ID); had {
		return
	}
	id := cc.st.ID
	cc.expire = time.AfterFunc(liveCallTTL, func() { p.live.Delete(id) })
	if _, had := p.live.LoadOrStore(id, cc); had {
		cc.expire.Stop()
	}
}

// untrack forgets an ended call.
func (p *Placer) untrack(callID string) {
	if v, ok := p.live.LoadAndDelete(callID); ok {
		v.(carrierCall).expire.Stop()
	}
}

// EndCall ends a call this placer placed and that has not ended: a
// sandbox call (BYE both legs), a Twilio call (the call is updated to
// Status=completed) or a Telnyx call (Call Control hangup). The ended
// event has reason, and usage is ended once (the carrier's callback that
// follows is a duplicate). It implements calls.Ender; false means the
// call is not this node's to end, is over, or the carrier refused.
func (p *Placer) EndCall(callID, reason string) bool {
	if p.endSandbox(callID, reason) {
		return true
	}
	v, ok := p.live.Load(callID)
	if !ok {
		return false
	}
	if _, over := p.seen.Load(callID + "/ended"); over {
		return false
	}
	cc := v.(carrierCall)
	// A callback for this call's end that lands while the hangup is in
	// flight carries reason too.
	p.cuts.Store(callID, reason)
	defer p.cuts.Delete(callID)
	ctx, cancel := context.WithTimeout(context.Background(), hangupTimeout)
	defer cancel()
	err := p.hangupCarrier(ctx, cc)
	p.hungUp(cc.carrier, err)
	if err != nil {
		if _, over := p.seen.Load(callID + "/ended"); over {
			// The carrier reported the end while the request was in
			// flight (and refused it as the call was over): the call
			// ended, with reason.
			return true
		}
		if errors.Is(err, carrier.ErrNotFound) {
			p.log.Info("placer: call to end already gone at the carrier", "call_id", callID, "carrier", cc.carrier, "err", err)
		} else {
			p.log.Warn("placer: ending the call failed", "call_id", callID, "carrier", cc.carrier, "err", err)
		}
		return false
	}
	p.ended(Call{ID: callID, From: cc.st.From, To: cc.st.To, AgentID: cc.st.Agent, Carrier: cc.carrier}, cc.st, reason)
	p.log.Info("placer: call ended", "call_id", callID, "carrier", cc.carrier, "reason", reason)
	return true
}

func (p *Placer) hangupCarrier(ctx context.Context, cc carrierCall) error {
	c, err := p.adapter(ctx, cc.st.WS, cc.integration)
	if err != nil {
		return err
	}
	switch cc.carrier {
	case "twilio":
		tc, ok := c.(twilioEnder)
		if !ok {
			return errors.New("placer: integration " + cc.integration + " cannot end Twilio calls")
		}
		_, err = tc.EndCall(ctx, cc.ref)
		return err
	case "telnyx":
		tc, ok := c.(telnyxCaller)
		if !ok {
			return errors.New("placer: integration " + cc.integration + " cannot end Telnyx calls")
		}
		return tc.Hangup(ctx, cc.ref, cc.st.ID+"-end")
	}
	return errors.New("placer: carrier " + cc.carrier + " calls cannot be ended")
}

// cutReason is the reason of an EndCall in flight for callID, if any.
func (p *Placer) cutReason(callID string) (string, bool) {
	v, ok := p.cuts.Load(callID)
	if !ok {
		return "", false
	}
	return v.(string), true
}

// hungUp counts a carrier hangup's result.
func (p *Placer) hungUp(carrier string, err error) {
	if p.d.Metrics == nil {
		return
	}
	r := "ended"
	if err != nil {
		r = "failed"
	}
	p.d.Metrics.Hangups.WithLabelValues(carrier, r).Inc()
}
