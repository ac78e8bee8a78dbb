package media

// RepointAgent points the agent-facing leg at another endpoint, from that
// endpoint's SDP answer: callgate's bridged transfer (gateway/sip/bridge.go)
// hands the caller to a new leg that was offered the agent-facing port.
// From now on the caller's packets go to the address in sdp, and only
// that address is accepted on the agent-facing ports: no latching, since
// the previous endpoint (the agent) may still be sending until its BYE.
// The caller-facing leg is not touched (the caller keeps sending to the
// same port). Malformed SDP, or SDP without an audio address, gives an
// error and changes nothing.
func (s *Session) RepointAgent(sdp []byte) error {
	if s.closing.Load() {
		return ErrSessionClosed
	}
	_, info, err := rewriteSDP(sdp, s.m.advIP, s.caller.p.rtpAddr.Port(), s.caller.p.rtcpAddr.Port())
	if err != nil {
		return err
	}
	if !info.rtp.IsValid() {
		return ErrBadSDP
	}
	s.sdpMu.Lock()
	s.agentSDP = info
	s.caller.clock.Store(clockTable(s.agentSDP, s.callerSDP))
	s.agent.clock.Store(clockTable(s.callerSDP, s.agentSDP))
	s.sdpMu.Unlock()
	l := s.agent
	l.setSDP(info)
	l.mu.Lock()
	l.established, l.rtcpFixed = true, true
	l.mu.Unlock()
	l.p.rtp.connect(info.rtp)
	if c := l.rtcpPeer.Load(); c != nil {
		l.p.rtcp.connect(*c)
	}
	return nil
}
