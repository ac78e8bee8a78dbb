package sip

import (
	"bytes"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// The caller's identity on a fallback leg to a phone number (a
// "number" step, which leaves through the gateway number's carrier). A
// proxy keeps From as it is (RFC 3261 16.6; every in-dialog message
// would otherwise need rewriting both ways), so:
//
//   - sandbox: the original caller goes on in From, nothing added;
//   - twilio, telnyx (termination accepts only numbers of the account as
//     caller ID): the gateway number, which the workspace owns, is
//     asserted in P-Asserted-Identity (RFC 3325) and named as the
//     diverting party in Diversion (RFC 5806, reason unconditional), as a
//     PBX forwarding a call to the PSTN does; From keeps the original
//     caller. P-Asserted-Identity and Diversion from the caller are not
//     passed on.
//
// callgate's X-Callgate-* and the routing hook's headers are meant for
// agents and never reach a carrier.

// carrierLeg reports whether the call's current leg is a fallback to a
// phone number (c.mu held).
func (c *call) carrierLeg() bool { return c.ctl != nil && c.ctl.toCarrier && c.out == nil }

// assertsGateway reports whether a carrier leg asserts the gateway
// number (its carrier checks caller IDs).
func (c *call) assertsGateway() bool {
	if !c.carrierLeg() || c.rt.route == nil {
		return false
	}
	switch c.rt.route.Number.Carrier {
	case "twilio", "telnyx":
		return true
	}
	return false
}

// isIdentityHeader: the caller's identity headers a carrier leg that
// asserts the gateway number replaces.
func isIdentityHeader(name string) bool {
	return strings.EqualFold(name, "P-Asserted-Identity") || strings.EqualFold(name, "Diversion")
}

// writeGatewayIdentity writes P-Asserted-Identity and Diversion naming
// the gateway number at the target's host.
func (c *call) writeGatewayIdentity(buf *bytes.Buffer, target *sip.Uri) {
	u := sip.Uri{Scheme: "sip", User: c.rt.route.Number.E164, Host: target.Host}
	v := "<" + u.String() + ">"
	writeHeader(buf, "P-Asserted-Identity", v)
	writeHeader(buf, "Diversion", v+";reason=unconditional;counter=1")
}
