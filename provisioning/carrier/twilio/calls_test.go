package twilio_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/twilio"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// TestEndCallCompletesTheCall: twilio-go's UpdateCall with
// Status=completed against the fake hangs the call up (200, the Call
// resource in status completed); a second one is Twilio's 21220, an
// unknown sid 20404 (ErrNotFound).
func TestEndCallCompletesTheCall(t *testing.T) {
	fk, c := runFake(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+12125550100", Voice: true}}})
	res, err := c.CreateCall(ctx(t), twilio.CallParams{From: "+12125550100", To: "+442079460123", Twiml: "<Response><Pause/></Response>"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.EndCall(ctx(t), res.SID)
	if err != nil || got.SID != res.SID || got.Status != "completed" {
		t.Fatalf("end call: %+v %v", got, err)
	}
	if cs := fk.Calls(); len(cs) != 1 || cs[0].Status != "completed" || !slices.Equal(cs[0].Updates, []string{"completed"}) {
		t.Fatalf("fake calls %+v", cs)
	}
	_, err = c.EndCall(ctx(t), res.SID)
	if ce := wantKind(t, err, carrier.ErrInvalidQuery); !strings.Contains(ce.Detail, "21220") {
		t.Fatalf("second end: %v", ce)
	}
	_, err = c.EndCall(ctx(t), "CA00000000000000000000000000000000")
	wantKind(t, err, carrier.ErrNotFound)
	_, err = c.EndCall(ctx(t), "")
	wantKind(t, err, carrier.ErrInvalidQuery)
	if cs := fk.Calls(); len(cs[0].Updates) != 1 {
		t.Fatalf("refused updates were recorded: %+v", cs[0].Updates)
	}
}
