package media

import "time"

// Media liveness per call (issue 18): an agent's media_timeout replaces
// the node's for the calls to that agent.

// SetMediaTimeout sets this call's media timeout: the call ends when
// neither side sent a packet for d after the answer. 0 restores the
// manager's media_timeout. The watcher checks every 250 ms at most.
func (s *Session) SetMediaTimeout(d time.Duration) {
	if d < 0 {
		d = 0
	}
	s.timeout.Store(int64(d))
}

// mediaTimeout is the session's timeout, else def.
func (s *Session) mediaTimeout(def time.Duration) time.Duration {
	if t := s.timeout.Load(); t > 0 {
		return time.Duration(t)
	}
	return def
}
