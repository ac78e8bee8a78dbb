package media

import (
	"errors"
	"testing"
)

// The same shapes gateway/sip declares.
type sipMediaSession interface {
	RewriteOffer(sdp []byte) ([]byte, error)
	RewriteAnswer(sdp []byte) ([]byte, error)
	Close() any
}

type sipMediaAnchor interface {
	NewSession(callID string, onTimeout func()) (sipMediaSession, error)
}

var _ sipMediaAnchor = Anchor[sipMediaSession]{}

func TestAnchorAdapter(t *testing.T) {
	m, _ := runTestManager(t, func(c *Config) { c.PortMax = c.PortMin + 3 }) // one call
	var a sipMediaAnchor = Anchor[sipMediaSession]{M: m}
	s, err := a.NewSession("a1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RewriteOffer(readSDP(t, "twilio_offer.sdp")); err != nil {
		t.Fatal(err)
	}
	s2, err := a.NewSession("a2", nil)
	if !errors.Is(err, ErrNoPorts) || s2 != nil {
		t.Fatalf("exhausted: %v, session %v (must be a nil interface)", err, s2)
	}
	if st, ok := s.Close().(*CallStats); !ok || st.CallID != "a1" {
		t.Fatalf("Close() = %#v", st)
	}
}
