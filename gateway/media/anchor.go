package media

import (
	"fmt"
	"reflect"
)

// Anchor adapts a Manager to a signalling package's own interface whose
// NewSession returns that package's session interface type S, without
// this package importing it. For gateway/sip:
//
//	deps.Media = media.Anchor[sip.MediaSession]{M: mgr}
//
// *Session must implement S (RewriteOffer, RewriteAnswer, Close() any).
// On error the result is S's zero value (a nil interface), never a
// non-nil interface holding a nil *Session.
type Anchor[S any] struct{ M *Manager }

// NewSession calls M.NewSession and returns the session as S.
func (a Anchor[S]) NewSession(callID string, onTimeout func()) (S, error) {
	var zero S
	s, err := a.M.NewSession(callID, onTimeout)
	if err != nil {
		return zero, err
	}
	v, ok := any(s).(S)
	if !ok {
		s.Close()
		return zero, fmt.Errorf("media: *media.Session does not implement %v", reflect.TypeFor[S]())
	}
	return v, nil
}
