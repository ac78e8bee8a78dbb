package sip

import (
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Early dialogs (RFC 3262 100rel/PRACK, RFC 3311 UPDATE): a provisional
// response with a To tag from the call's current branch creates an early
// dialog, and the call is recorded under its Call-ID from then on (not
// only from the 2xx), so that the early dialog's requests (PRACK, UPDATE,
// INFO) are forwarded as requests of a recorded dialog: routed by the
// 18x's Record-Route and To tag like any in-dialog request, their SDP
// rewritten for relayed media, their CSeq (and a PRACK's RAck) renumbered
// when a carrier's challenge shifted the INVITE's (egressauth.go), the
// workspace's header policy applied. Reliable provisional responses
// (Require: 100rel, RSeq) pass untouched.

// earlyDialog records the call when a provisional response of the
// current branch (not 100), about to go to the caller, creates an early
// dialog: toTagged, its To has a tag. c.mu held.
func (c *call) earlyDialog(toTagged bool) {
	if c.ended || c.state >= stAccepted || !toTagged {
		return
	}
	if d, ok := c.s.dialogs.get(c.id); ok && d == c {
		return
	}
	c.s.dialogs.put(c.id, c)
}

// shiftRAck renumbers the CSeq in a PRACK's RAck ("rseq cseq method",
// RFC 3262 7.2) by delta, as the PRACK's own CSeq is: the callee saw the
// INVITE renumbered. An RAck that does not parse is left alone.
func shiftRAck(req *sip.Request, delta uint32) {
	if req.Method != sip.PRACK || delta == 0 {
		return
	}
	h := req.GetHeader("RAck")
	if h == nil {
		return
	}
	v, ok := shiftedRAck(h.Value(), delta)
	if !ok {
		return
	}
	req.RemoveHeader(h.Name())
	req.AppendHeader(sip.NewHeader("RAck", v))
}

// shiftedRAck is RAck value v with its CSeq number plus delta.
func shiftedRAck(v string, delta uint32) (string, bool) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return "", false
	}
	rseq, err1 := strconv.ParseUint(f[0], 10, 32)
	cseq, err2 := strconv.ParseUint(f[1], 10, 32)
	if err1 != nil || err2 != nil || !tokenOnly(f[2]) || cseq+uint64(delta) > 1<<32-1 {
		return "", false
	}
	return strconv.FormatUint(rseq, 10) + " " + strconv.FormatUint(cseq+uint64(delta), 10) + " " + f[2], true
}
