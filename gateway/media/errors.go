package media

import "errors"

// statusError is an error that knows the SIP status the signalling side
// should answer with. gateway/sip can read it through
// interface{ SIPStatus() int } without importing this package.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string  { return e.msg }
func (e *statusError) SIPStatus() int { return e.status }

var (
	// ErrNoPorts is returned by NewSession when the port range is
	// exhausted. SIPStatus() is 503.
	ErrNoPorts error = &statusError{503, "media: no free RTP ports"}
	// ErrClosed is returned by NewSession after Manager.Close. SIPStatus()
	// is 503.
	ErrClosed error = &statusError{503, "media: manager closed"}
	// ErrBadSDP is wrapped by every error about malformed or unusable SDP
	// (errors.Is(err, ErrBadSDP)). Those errors have SIPStatus() 400.
	ErrBadSDP = errors.New("media: malformed SDP")
	// ErrSessionClosed is returned by RewriteOffer/RewriteAnswer on a
	// closed session. SIPStatus() is 500.
	ErrSessionClosed error = &statusError{500, "media: session closed"}
)

// sdpError is a malformed-SDP error.
type sdpError struct {
	what string
	err  error
}

func (e *sdpError) Error() string {
	s := "media: malformed SDP: " + e.what
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}
func (e *sdpError) Unwrap() []error { return []error{ErrBadSDP, e.err} }
func (e *sdpError) SIPStatus() int  { return 400 }
