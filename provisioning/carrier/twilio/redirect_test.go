package twilio_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/twilio"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// TestRedirectCallGivesTheCallNewTwiML: RedirectCall updates a live call
// with Twiml (the fake records it and leaves the call's status); a call
// that is over is Twilio's 21220, an unknown sid not found, and a missing
// TwiML is refused before sending.
func TestRedirectCallGivesTheCallNewTwiML(t *testing.T) {
	fk, c := runFake(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+12125550100", Voice: true}}})
	res, err := c.CreateCall(ctx(t), twilio.CallParams{From: "+12125550100", To: "+442079460123", Twiml: "<Response><Pause/></Response>"})
	if err != nil {
		t.Fatal(err)
	}
	dial := `<Response><Dial callerId="+12125550100"><Number>+12125550143</Number></Dial></Response>`
	got, err := c.RedirectCall(ctx(t), res.SID, dial)
	if err != nil || got.SID != res.SID || got.Status != "queued" {
		t.Fatalf("redirect: %+v %v", got, err)
	}
	if cs := fk.Calls(); !slices.Equal(cs[0].TwimlUpdates, []string{dial}) || cs[0].Status != "queued" {
		t.Fatalf("fake call %+v", cs[0])
	}
	_, err = c.RedirectCall(ctx(t), res.SID, "")
	wantKind(t, err, carrier.ErrInvalidQuery)
	_, err = c.RedirectCall(ctx(t), "CA00000000000000000000000000000000", dial)
	wantKind(t, err, carrier.ErrNotFound)
	if _, err := c.EndCall(ctx(t), res.SID); err != nil {
		t.Fatal(err)
	}
	_, err = c.RedirectCall(ctx(t), res.SID, dial)
	if ce := wantKind(t, err, carrier.ErrInvalidQuery); !strings.Contains(ce.Detail, "21220") {
		t.Fatalf("redirect of an ended call: %v", ce)
	}
	if cs := fk.Calls(); len(cs[0].TwimlUpdates) != 1 {
		t.Fatalf("refused redirects were recorded: %v", cs[0].TwimlUpdates)
	}
}
