package twilio

import (
	"context"

	api "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/callgate/callgate/provisioning/carrier"
)

// CallParams is one outbound call through Twilio's Calls API
// (POST /2010-04-01/Accounts/{AccountSid}/Calls.json).
type CallParams struct {
	From, To string // E.164
	// Twiml runs when the callee answers (e.g. <Dial><Sip> to the agent).
	Twiml string
	// StatusCallback receives the call's progress for StatusEvents
	// (initiated, ringing, answered, completed); empty: none.
	StatusCallback string
	StatusEvents   []string
	// Timeout is how long Twilio lets the callee's phone ring (seconds; 0:
	// Twilio's default of 60).
	Timeout int
}

// CallResult is the created Call resource.
type CallResult struct {
	SID    string // CA...
	Status string // queued, ringing, ...
}

// CreateCall places an outbound call. Bad input (an invalid To, a From
// that is not a number of the account) is ErrInvalidQuery with Twilio's
// code and message in the detail.
func (c *Carrier) CreateCall(ctx context.Context, p CallParams) (CallResult, error) {
	o := c.begin(ctx, "create call")
	params := &api.CreateCallParams{}
	params.SetFrom(p.From).SetTo(p.To).SetTwiml(p.Twiml)
	if p.StatusCallback != "" {
		params.SetStatusCallback(p.StatusCallback).SetStatusCallbackMethod("POST")
		if len(p.StatusEvents) > 0 {
			params.SetStatusCallbackEvent(p.StatusEvents)
		}
	}
	if p.Timeout > 0 {
		params.SetTimeout(p.Timeout)
	}
	call, err := o.api.CreateCall(params)
	if err != nil {
		return CallResult{}, o.fail(err, carrier.ErrInvalidQuery)
	}
	return CallResult{SID: str(call.Sid), Status: str(call.Status)}, nil
}

// EndCall hangs up a call in any state (POST
// /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json with
// Status=completed). An unknown sid is ErrNotFound; a call already over is
// ErrInvalidQuery (Twilio's 21220) with Twilio's message in the detail.
func (c *Carrier) EndCall(ctx context.Context, sid string) (CallResult, error) {
	o := c.begin(ctx, "end call")
	if sid == "" {
		return CallResult{}, &carrier.Error{Carrier: Name, Op: o.name, Kind: carrier.ErrInvalidQuery, Detail: "a call sid is required"}
	}
	call, err := o.api.UpdateCall(sid, (&api.UpdateCallParams{}).SetStatus("completed"))
	if err != nil {
		return CallResult{}, o.fail(err, carrier.ErrNotFound)
	}
	return CallResult{SID: str(call.Sid), Status: str(call.Status)}, nil
}

// RedirectCall gives a live call new TwiML (POST
// /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json with Twiml=…): the
// call leaves what it was doing and runs it, e.g. <Dial> to transfer the
// callee (issue 18). An unknown sid is ErrNotFound; a call already over is
// ErrInvalidQuery (Twilio's 21220).
func (c *Carrier) RedirectCall(ctx context.Context, sid, twiml string) (CallResult, error) {
	o := c.begin(ctx, "redirect call")
	if sid == "" || twiml == "" {
		return CallResult{}, &carrier.Error{Carrier: Name, Op: o.name, Kind: carrier.ErrInvalidQuery, Detail: "a call sid and TwiML are required"}
	}
	call, err := o.api.UpdateCall(sid, (&api.UpdateCallParams{}).SetTwiml(twiml))
	if err != nil {
		return CallResult{}, o.fail(err, carrier.ErrNotFound)
	}
	return CallResult{SID: str(call.Sid), Status: str(call.Status)}, nil
}
