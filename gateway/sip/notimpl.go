package sip

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// allowMethods is the Allow header value of our 405 and 501 answers.
const allowMethods = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, REFER, NOTIFY"

// unknownMethodMismatch reports whether req, which failed validation, is
// a request of a method callgate does not implement whose CSeq names
// another method (RFC 4475 3.1.2.18, mismatch02: "should respond with a
// 501 (Not Implemented)"; 400 is only "also acceptable"). Nothing else is
// wrong with it that a 400 must name: its transaction headers are there
// and appear once.
func unknownMethodMismatch(req *sip.Request) bool {
	if !hasTxHeaders(req) || methodLabel(string(req.Method)) != "other" {
		return false
	}
	if strings.EqualFold(string(req.CSeq().MethodName), string(req.Method)) {
		return false
	}
	// the other checks of validate, with the CSeq method taken as matching
	saved := req.CSeq().MethodName
	req.CSeq().MethodName = req.Method
	why := validate(req)
	req.CSeq().MethodName = saved
	return why == ""
}
