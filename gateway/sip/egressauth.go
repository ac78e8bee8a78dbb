package sip

import (
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// A carrier termination that challenges an outbound INVITE (401 with
// WWW-Authenticate, 407 with Proxy-Authenticate) gets it once more with
// the integration's termination credentials (routing.Termination), as a
// new transaction: same Call-ID, the next CSeq. The carrier then numbers
// the dialog one higher than the agent does, so the agent's in-dialog
// requests toward the carrier are renumbered (call.cseqDelta) and the
// answers to them numbered back (dialog.go, transaction.go).

// retryWithAuth re-sends the INVITE of branch b, challenged by res, with
// credentials; false when there are none, the challenge cannot be
// answered, or the INVITE was already re-sent once. c.mu held.
func (c *call) retryWithAuth(b *branch, res *sip.Response) bool {
	o := c.out
	if o.authed {
		return false
	}
	user, pass := c.s.egressAuth(c.rt.route)
	if user == "" {
		return false
	}
	name, hname := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		name, hname = "Proxy-Authenticate", "Proxy-Authorization"
	}
	var chal *digest.Challenge
	for _, h := range res.GetHeaders(name) {
		if ch, err := digest.ParseChallenge(h.Value()); err == nil && digest.CanDigest(ch) {
			chal = ch
			break
		}
	}
	if chal == nil {
		return false
	}
	cr, err := digest.Digest(chal, digest.Options{Method: "INVITE", URI: b.target.String(), Username: user, Password: pass, Count: 1})
	if err != nil {
		return false
	}
	o.authed = true
	o.authz = hname + ": " + cr.String() + "\r\n"
	o.authzCI = c.ci
	c.cseqDelta++
	c.startBranch() // the same candidate, a new transaction
	return true
}
