package callhistory

import (
	"time"

	"github.com/callgate/callgate/gateway/calls"
)

// MaxDTMF caps the DTMF entries a call record keeps (the events beyond
// are in the stream, not in the record).
const MaxDTMF = 100

// maxDTMFDigits caps one entry's digits (an API command holds at most
// calls.MaxDTMFDigits).
const maxDTMFDigits = calls.MaxDTMFDigits

// DTMF is one dtmf event of a call: digits the caller or the agent sent.
type DTMF struct {
	At     time.Time `json:"at"`
	From   string    `json:"from"`   // caller, agent
	Via    string    `json:"via"`    // rfc4733, info, send_dtmf (Telnyx Call Control)
	Digits string    `json:"digits"` // what was pressed or sent
}

// addDTMF keeps a dtmf event's digits in order of time.
func (c *Call) addDTMF(e calls.Event, at time.Time) {
	if e.Digits == "" || len(c.DTMF) >= MaxDTMF {
		return
	}
	d := DTMF{At: at, From: e.DTMFFrom, Via: e.DTMFVia, Digits: e.Digits}
	if len(d.Digits) > maxDTMFDigits {
		d.Digits = d.Digits[:maxDTMFDigits]
	}
	if d.From != "agent" {
		d.From = "caller"
	}
	switch d.Via {
	case "info", "send_dtmf":
	default:
		d.Via = "rfc4733"
	}
	i := len(c.DTMF)
	for i > 0 && c.DTMF[i-1].At.After(at) {
		i--
	}
	c.DTMF = append(c.DTMF, DTMF{})
	copy(c.DTMF[i+1:], c.DTMF[i:])
	c.DTMF[i] = d
}
