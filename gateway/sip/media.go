package sip

// MediaAnchor creates media relay sessions (gateway/media implements it).
// Deps.Media nil means media flows directly between caller and agent.
type MediaAnchor interface {
	// NewSession reserves relay ports for a call. onTimeout is called
	// (once, from any goroutine) when media stops flowing; the proxy then
	// ends the call with BYE to both sides. An error means no capacity:
	// the INVITE is answered 503.
	NewSession(callID string, onTimeout func()) (MediaSession, error)
}

// MediaSession is one call's relay. SDP from the caller (carrier) leg goes
// through RewriteOffer, SDP from the agent leg through RewriteAnswer,
// whichever message carries it (INVITE, 18x/2xx, re-INVITE, UPDATE, ACK).
// An error means the SDP is malformed: the request is answered 400.
type MediaSession interface {
	RewriteOffer(sdp []byte) ([]byte, error)
	RewriteAnswer(sdp []byte) ([]byte, error)
	// Close releases the ports; its result (per-leg figures) goes into the
	// `ended` event's Media field.
	Close() any
}
