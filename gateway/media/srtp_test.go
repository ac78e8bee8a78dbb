package media

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/routing"
)

// Peers here are pion/srtp contexts on loopback sockets: the caller (a
// carrier on a TLS trunk) and the agent each encrypt with their own key
// and decrypt with the key the relay gave them in the SDP.

func sdesSDP(e *endpoint, proto string, lines ...string) []byte {
	return bytes.Replace(offerFor(e, lines...), []byte("RTP/AVP"), []byte(proto), 1)
}

func cryptoLine(tag int, suite string, key []byte) string {
	return "a=crypto:" + strconv.Itoa(tag) + " " + suite + " inline:" + base64.StdEncoding.EncodeToString(key)
}

func mustKey(t testing.TB, suite string) []byte {
	t.Helper()
	k, err := newKey(suiteNamed(suite))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSecure(t testing.TB, body []byte) *secureMedia {
	t.Helper()
	sm, err := readSecure(body)
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	return sm
}

func srtpCtx(t testing.TB, suite string, key []byte) *srtp.Context {
	t.Helper()
	su := suiteNamed(suite)
	c, err := srtp.CreateContext(key[:su.keyLen], key[su.keyLen:], su.profile, srtp.SRTPReplayProtection(64))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func seal(t testing.TB, c *srtp.Context, p *rtp.Packet) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.EncryptRTP(nil, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// secureCall is a relayed call whose legs speak SRTP as the policy says.
type secureCall struct {
	*call
	offerToAgent, answerToCaller []byte
	callerKey, agentKey          []byte // the peers' own keys
}

// setupSecureCall: the caller offers proto with its key (suite
// callerSuite; "" = no a=crypto); the agent answers with agentSuite
// (the relay's tag for it; "" = plain RTP/AVP answer).
func setupSecureCall(t testing.TB, m *Manager, pol routing.SRTPCall, proto, callerSuite, agentSuite string) (*secureCall, error) {
	t.Helper()
	c := &secureCall{call: &call{caller: newEndpoint(t), agent: newEndpoint(t)}}
	s, err := m.NewSession("call-"+t.Name(), nil)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	c.s = s
	s.SetSRTP(pol)
	var lines []string
	if callerSuite != "" {
		c.callerKey = mustKey(t, callerSuite)
		lines = append(lines, cryptoLine(1, callerSuite, c.callerKey))
	}
	off, err := s.RewriteOffer(sdesSDP(c.caller, proto, lines...))
	if err != nil {
		return nil, err
	}
	c.offerToAgent = off
	c.toAgent = mediaAddr(t, off)
	var ans []byte
	if agentSuite == "" {
		ans = offerFor(c.agent)
	} else {
		tag := -1
		for _, cr := range mustSecure(t, off).cryptos {
			if cr.suite.name == agentSuite {
				tag = cr.tag
			}
		}
		if tag < 0 {
			t.Fatalf("the relay's offer has no %s:\n%s", agentSuite, off)
		}
		c.agentKey = mustKey(t, agentSuite)
		ans = sdesSDP(c.agent, "RTP/SAVP", cryptoLine(tag, agentSuite, c.agentKey))
	}
	a, err := s.RewriteAnswer(ans)
	if err != nil {
		return nil, err
	}
	c.answerToCaller = a
	c.toCaller = mediaAddr(t, a)
	return c, nil
}

// relayKey is the key the relay put in sdp for tag (any tag when tag < 0).
func relayKey(t testing.TB, body []byte, suite string) []byte {
	t.Helper()
	for _, c := range mustSecure(t, body).cryptos {
		if c.suite.name == suite {
			return c.key
		}
	}
	t.Fatalf("no %s a=crypto in\n%s", suite, body)
	return nil
}

var tlsBoth = routing.SRTPCall{Caller: routing.SRTPOptional, Agent: routing.SRTPOptional, CallerTLS: true, AgentTLS: true}

func TestSRTPBothLegsSDES(t *testing.T) {
	for _, agentSuite := range []string{"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"} {
		t.Run(agentSuite, func(t *testing.T) {
			m, reg := runTestManager(t, nil)
			c, err := setupSecureCall(t, m, tlsBoth, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", agentSuite)
			if err != nil {
				t.Fatal(err)
			}
			toAgent := mustSecure(t, c.offerToAgent)
			if !toAgent.savp || len(toAgent.cryptos) != 3 {
				t.Fatalf("offer to the agent: want RTP/SAVP with three a=crypto (mixed not allowed):\n%s", c.offerToAgent)
			}
			toCaller := mustSecure(t, c.answerToCaller)
			if !toCaller.savp || len(toCaller.cryptos) != 1 || toCaller.cryptos[0].tag != 1 || toCaller.cryptos[0].suite.name != "AES_CM_128_HMAC_SHA1_80" {
				t.Fatalf("answer to the caller: want RTP/SAVP, one a=crypto tag 1 of the offered suite:\n%s", c.answerToCaller)
			}
			relayToCaller := toCaller.cryptos[0].key
			relayToAgent := relayKey(t, c.offerToAgent, agentSuite)
			for _, k := range [][]byte{c.callerKey, c.agentKey} {
				if bytes.Equal(k, relayToCaller) || bytes.Equal(k, relayToAgent) {
					t.Fatal("the relay reused a peer's key")
				}
			}
			if bytes.Equal(relayToCaller[:16], relayToAgent[:16]) {
				t.Fatal("the relay used one key for both legs")
			}

			callerTx := srtpCtx(t, "AES_CM_128_HMAC_SHA1_80", c.callerKey)
			callerRx := srtpCtx(t, "AES_CM_128_HMAC_SHA1_80", relayToCaller)
			agentTx := srtpCtx(t, agentSuite, c.agentKey)
			agentRx := srtpCtx(t, agentSuite, relayToAgent)
			const n = 30
			for i := 0; i < n; i++ {
				payload := bytes.Repeat([]byte{byte(i)}, 160)
				c.caller.send(c.toCaller, seal(t, callerTx, rtpPacket(0x1111, uint16(100+i), uint32(i*160), payload)))
				got, _, err := c.agent.recv(2 * time.Second)
				if err != nil {
					t.Fatalf("caller->agent %d: %v", i, err)
				}
				if bytes.Contains(got, payload[:16]) && i > 0 {
					t.Fatalf("caller->agent %d: payload in clear on an SRTP leg", i)
				}
				plain, err := agentRx.DecryptRTP(nil, got, nil)
				if err != nil {
					t.Fatalf("caller->agent %d: agent cannot decrypt with the relay's key: %v", i, err)
				}
				var pk rtp.Packet
				if err := pk.Unmarshal(plain); err != nil || !bytes.Equal(pk.Payload, payload) || pk.SequenceNumber != uint16(100+i) {
					t.Fatalf("caller->agent %d: got seq %d payload %x (%v)", i, pk.SequenceNumber, pk.Payload[:4], err)
				}

				payload = bytes.Repeat([]byte{byte(200 - i)}, 160)
				c.agent.send(c.toAgent, seal(t, agentTx, rtpPacket(0x2222, uint16(9000+i), uint32(i*160), payload)))
				got, _, err = c.caller.recv(2 * time.Second)
				if err != nil {
					t.Fatalf("agent->caller %d: %v", i, err)
				}
				plain, err = callerRx.DecryptRTP(nil, got, nil)
				if err != nil {
					t.Fatalf("agent->caller %d: caller cannot decrypt with the relay's key: %v", i, err)
				}
				if err := pk.Unmarshal(plain); err != nil || !bytes.Equal(pk.Payload, payload) {
					t.Fatalf("agent->caller %d: payload differs", i)
				}
			}
			st := c.s.Close().(*CallStats)
			if st.Caller.SRTP != "AES_CM_128_HMAC_SHA1_80" || st.Agent.SRTP != agentSuite {
				t.Errorf("stats srtp: caller %q agent %q", st.Caller.SRTP, st.Agent.SRTP)
			}
			if st.Caller.RTPPackets != n || st.Agent.RTPPackets != n || st.Caller.LossRatio != 0 {
				t.Errorf("stats: caller %d agent %d loss %v", st.Caller.RTPPackets, st.Agent.RTPPackets, st.Caller.LossRatio)
			}
			// keys never leave in the call's figures
			js, _ := json.Marshal(st)
			for _, k := range [][]byte{c.callerKey, c.agentKey, relayToCaller, relayToAgent} {
				if bytes.Contains(js, []byte(base64.StdEncoding.EncodeToString(k))) {
					t.Fatal("a key is in the call's media figures")
				}
			}
			if v := counterValue(t, reg, "callgate_media_srtp_legs_total"); v != 2 {
				t.Errorf("srtp_legs_total = %v, want 2", v)
			}
		})
	}
}

func TestSRTPMixedRefusedUnlessWorkspaceAllows(t *testing.T) {
	callerOnly := routing.SRTPCall{Caller: routing.SRTPOptional, CallerTLS: true, AgentTLS: false}
	m, _ := runTestManager(t, nil)
	_, err := setupSecureCall(t, m, callerOnly, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "")
	var se interface{ SIPStatus() int }
	if !errors.Is(err, ErrSRTPPolicy) || !errors.As(err, &se) || se.SIPStatus() != 488 || !strings.Contains(err.Error(), "allow_mixed_srtp") {
		t.Fatalf("mixed call without the workspace's consent: got %v, want a 488 SRTP policy error naming allow_mixed_srtp", err)
	}

	allowed := callerOnly
	allowed.AllowMixed = true
	c, err := setupSecureCall(t, m, allowed, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "")
	if err != nil {
		t.Fatal(err)
	}
	if sm := mustSecure(t, c.offerToAgent); sm.savp || len(sm.cryptos) != 0 || !bytes.Contains(c.offerToAgent, []byte("RTP/AVP")) {
		t.Fatalf("offer to a plain agent: want RTP/AVP without a=crypto:\n%s", c.offerToAgent)
	}
	relayToCaller := mustSecure(t, c.answerToCaller).cryptos[0].key
	callerTx := srtpCtx(t, "AES_CM_128_HMAC_SHA1_80", c.callerKey)
	callerRx := srtpCtx(t, "AES_CM_128_HMAC_SHA1_80", relayToCaller)
	payload := bytes.Repeat([]byte{0x55}, 160)
	for i := 0; i < 5; i++ {
		c.caller.send(c.toCaller, seal(t, callerTx, rtpPacket(1, uint16(i), uint32(i*160), payload)))
		got, _, err := c.agent.recv(2 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var pk rtp.Packet
		if err := pk.Unmarshal(got); err != nil || !bytes.Equal(pk.Payload, payload) {
			t.Fatalf("plain agent got %x, want the decrypted packet", got)
		}
		sent := c.agent.sendRTP(c.toAgent, rtpPacket(2, uint16(i), uint32(i*160), payload))
		got, _, err = c.caller.recv(2 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := callerRx.DecryptRTP(nil, got, nil)
		if err != nil || !bytes.Equal(plain, sent) {
			t.Fatalf("caller: %v", err)
		}
	}
	st := c.s.Stats()
	if st.Caller.SRTP == "" || st.Agent.SRTP != "" {
		t.Fatalf("stats srtp: caller %q agent %q", st.Caller.SRTP, st.Agent.SRTP)
	}
}

func TestSRTPPolicyRefusals488(t *testing.T) {
	cases := []struct {
		name        string
		pol         routing.SRTPCall
		proto, sute string
		want        string
	}{
		{"required without offer", routing.SRTPCall{Caller: routing.SRTPRequired, CallerTLS: true, AllowMixed: true}, "RTP/AVP", "", "required"},
		{"SDES over UDP signalling", routing.SRTPCall{Caller: routing.SRTPOptional, CallerTLS: false, AllowMixed: true}, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "TLS"},
		{"SAVP on a leg with srtp off", routing.SRTPCall{Agent: routing.SRTPOptional, AgentTLS: true, CallerTLS: true}, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "off"},
		{"agent required, not TLS", routing.SRTPCall{Caller: routing.SRTPOptional, CallerTLS: true, Agent: routing.SRTPRequired}, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "not TLS"},
		{"agent required, plain caller, mixed off", routing.SRTPCall{Agent: routing.SRTPRequired, AgentTLS: true}, "RTP/AVP", "", "allow_mixed_srtp"},
		{"unknown suite only", routing.SRTPCall{Caller: routing.SRTPOptional, CallerTLS: true, AllowMixed: true}, "RTP/SAVP", "", "no supported crypto"},
	}
	m, _ := runTestManager(t, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := setupSecureCall(t, m, tc.pol, tc.proto, tc.sute, "")
			var se interface {
				SIPStatus() int
				Reason() string
			}
			if !errors.As(err, &se) || se.SIPStatus() != 488 || !strings.Contains(se.Reason(), tc.want) {
				t.Fatalf("got %v, want 488 with a reason containing %q", err, tc.want)
			}
		})
	}
}

// With srtp off on both legs nothing is touched: crypto lines and SRTP
// packets pass through end to end as before.
func TestSRTPOffPassesThroughUntouched(t *testing.T) {
	m, _ := runTestManager(t, nil)
	c, err := setupSecureCall(t, m, routing.SRTPCall{}, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(c.offerToAgent, []byte(base64.StdEncoding.EncodeToString(c.callerKey))) || !bytes.Contains(c.offerToAgent, []byte("RTP/SAVP")) {
		t.Fatalf("offer changed:\n%s", c.offerToAgent)
	}
	sent := seal(t, srtpCtx(t, "AES_CM_128_HMAC_SHA1_80", c.callerKey), rtpPacket(1, 1, 160, bytes.Repeat([]byte{1}, 160)))
	c.caller.send(c.toCaller, sent)
	got, _, err := c.agent.recv(2 * time.Second)
	if err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("packet changed or lost: %v", err)
	}
}

// A packet under a wrong key is dropped and counted, and it does not
// move the leg's latch; a replayed packet is dropped and counted.
func TestSRTPWrongKeyAndReplayDropped(t *testing.T) {
	m, reg := runTestManager(t, nil)
	c, err := setupSecureCall(t, m, tlsBoth, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80")
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte{0x42}, 160)
	wrong := srtpCtx(t, "AES_CM_128_HMAC_SHA1_80", mustKey(t, "AES_CM_128_HMAC_SHA1_80"))
	attacker := newEndpoint(t)
	for i := 0; i < 5; i++ {
		c.caller.send(c.toCaller, seal(t, wrong, rtpPacket(0x1111, uint16(i), uint32(i*160), payload)))
		attacker.send(c.toCaller, seal(t, wrong, rtpPacket(0x6666, uint16(i), uint32(i*160), payload)))
	}
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if v := counterValue(t, reg, "callgate_media_srtp_auth_failures_total"); v != 10 {
			return fmt.Errorf("auth failures %v, want 10", v)
		}
		return nil
	})
	agentRx := srtpCtx(t, "AES_CM_128_HMAC_SHA1_80", relayKey(t, c.offerToAgent, "AES_CM_128_HMAC_SHA1_80"))
	// nextSeq is the sequence number of the next packet the agent gets:
	// what was dropped before it never arrives.
	nextSeq := func() uint16 {
		t.Helper()
		got, _, err := c.agent.recv(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var h rtp.Header
		if _, err := agentRx.DecryptRTP(nil, got, &h); err != nil {
			t.Fatalf("agent: %v", err)
		}
		return h.SequenceNumber
	}
	good := srtpCtx(t, "AES_CM_128_HMAC_SHA1_80", c.callerKey)
	pkt := seal(t, good, rtpPacket(0x1111, 500, 8000, payload))
	c.caller.send(c.toCaller, pkt)
	if seq := nextSeq(); seq != 500 {
		t.Fatalf("agent got seq %d first, want the authentic 500", seq)
	}
	c.caller.send(c.toCaller, pkt) // replayed
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if v := counterValue(t, reg, "callgate_media_srtp_replays_total"); v != 1 {
			return fmt.Errorf("replays %v, want 1", v)
		}
		return nil
	})
	c.caller.send(c.toCaller, seal(t, good, rtpPacket(0x1111, 501, 8160, payload)))
	if seq := nextSeq(); seq != 501 {
		t.Fatalf("agent got seq %d after the replay, want 501", seq)
	}
	st := c.s.Stats()
	if st.Caller.SRTPAuthFailures != 10 || st.Caller.SRTPReplays != 1 || st.Caller.Latched || st.Caller.RTPPackets != 2 {
		t.Fatalf("caller leg: auth failures %d replays %d latched %v rtp %d", st.Caller.SRTPAuthFailures, st.Caller.SRTPReplays, st.Caller.Latched, st.Caller.RTPPackets)
	}
	for _, mt := range gather(t, reg, "callgate_media_srtp_auth_failures_total") {
		if mt.GetLabel()[0].GetValue() == "agent" && mt.GetCounter().GetValue() != 0 {
			t.Fatal("auth failures counted on the wrong leg")
		}
	}
}

// Best effort (RFC 4568 over RTP/AVP): an optional agent on TLS is
// offered keys in RTP/AVP when mixed calls are allowed, and may take them.
func TestSRTPBestEffortOfferToAgent(t *testing.T) {
	m, _ := runTestManager(t, nil)
	pol := routing.SRTPCall{Agent: routing.SRTPOptional, AgentTLS: true, AllowMixed: true}
	c, err := setupSecureCall(t, m, pol, "RTP/AVP", "", "AEAD_AES_128_GCM")
	if err != nil {
		t.Fatal(err)
	}
	sm := mustSecure(t, c.offerToAgent)
	if sm.savp || len(sm.cryptos) != 3 {
		t.Fatalf("want RTP/AVP with a=crypto:\n%s", c.offerToAgent)
	}
	if a := mustSecure(t, c.answerToCaller); a.savp || len(a.cryptos) != 0 {
		t.Fatalf("answer to the plain caller has crypto:\n%s", c.answerToCaller)
	}
	if st := c.s.Stats(); st.Agent.SRTP != "AEAD_AES_128_GCM" || st.Caller.SRTP != "" {
		t.Fatalf("srtp: caller %q agent %q", st.Caller.SRTP, st.Agent.SRTP)
	}
	// plain from the caller arrives encrypted at the agent
	agentRx := srtpCtx(t, "AEAD_AES_128_GCM", relayKey(t, c.offerToAgent, "AEAD_AES_128_GCM"))
	sent := c.caller.sendRTP(c.toCaller, rtpPacket(9, 1, 160, bytes.Repeat([]byte{7}, 160)))
	got, _, err := c.agent.recv(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := agentRx.DecryptRTP(nil, got, nil)
	if err != nil || !bytes.Equal(plain, sent) {
		t.Fatalf("agent decrypt: %v", err)
	}
}

// A re-INVITE from the caller with the same key keeps the legs' SRTP
// state; the 183 and 200 carrying one answer are both rewritten alike.
func TestSRTPReofferAndRepeatedAnswer(t *testing.T) {
	m, _ := runTestManager(t, nil)
	c, err := setupSecureCall(t, m, tlsBoth, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80")
	if err != nil {
		t.Fatal(err)
	}
	tag := mustSecure(t, c.offerToAgent).cryptos[0].tag
	ans := sdesSDP(c.agent, "RTP/SAVP", cryptoLine(tag, "AES_CM_128_HMAC_SHA1_80", c.agentKey))
	again, err := c.s.RewriteAnswer(ans) // the 200 after a 183
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustSecure(t, again).cryptos[0].key, mustSecure(t, c.answerToCaller).cryptos[0].key) {
		t.Fatal("the repeated answer carries another key")
	}
	before := c.s.caller.srtp.Load()
	re := bytes.Replace(sdesSDP(c.caller, "RTP/SAVP", cryptoLine(1, "AES_CM_128_HMAC_SHA1_80", c.callerKey)), []byte("o=- 1 1"), []byte("o=- 1 2"), 1)
	off, err := c.s.RewriteOffer(re)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(relayKey(t, off, "AES_CM_128_HMAC_SHA1_80"), relayKey(t, c.offerToAgent, "AES_CM_128_HMAC_SHA1_80")) {
		t.Fatal("re-offer to the agent changed the relay's key")
	}
	ans2 := bytes.Replace(ans, []byte("o=- 1 1"), []byte("o=- 1 2"), 1)
	if _, err := c.s.RewriteAnswer(ans2); err != nil {
		t.Fatal(err)
	}
	if c.s.caller.srtp.Load() != before {
		t.Fatal("same keys, new SRTP context: rollover and replay state lost")
	}
}

func TestParseCrypto(t *testing.T) {
	k30 := base64.StdEncoding.EncodeToString(make([]byte, 30))
	k28 := base64.StdEncoding.EncodeToString(make([]byte, 28))
	cases := []struct {
		v  string
		ok bool
	}{
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + k30, true},
		{"2 AES_CM_128_HMAC_SHA1_32 inline:" + k30 + "|2^31", true},
		{"3 AEAD_AES_128_GCM inline:" + k28, true},
		{"1 aes_cm_128_hmac_sha1_80 INLINE:" + strings.TrimRight(k30, "="), true},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + k28, false},               // wrong length
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|2^20|1:4", false}, // MKI
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|1:4", false},      // MKI
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + " UNENCRYPTED_SRTP", false},
		{"1 AES_256_CM_HMAC_SHA1_80 inline:" + k30, false},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + ";inline:" + k30, false},
		{"x AES_CM_128_HMAC_SHA1_80 inline:" + k30, false},
		{"1 AES_CM_128_HMAC_SHA1_80 uri:" + k30, false},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:!!!", false},
		{"", false},
	}
	for _, tc := range cases {
		c, ok := parseCrypto(tc.v)
		if ok != tc.ok {
			t.Errorf("%q: ok %v, want %v", tc.v, ok, tc.ok)
		}
		if ok {
			if back, ok2 := parseCrypto(c.value()); !ok2 || !bytes.Equal(back.key, c.key) || back.suite != c.suite {
				t.Errorf("%q does not round-trip", tc.v)
			}
		}
	}
}

// Digits the API sends to a caller on an SRTP leg leave encrypted with
// the relay's key for that leg, after the relayed audio's sequence.
func TestSendDTMFToSRTPCallerEncrypted(t *testing.T) {
	m, _ := runTestManager(t, nil)
	c, err := setupSecureCall(t, m, tlsBoth, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80")
	if err != nil {
		t.Fatal(err)
	}
	agentTx := srtpCtx(t, "AES_CM_128_HMAC_SHA1_80", c.agentKey)
	callerRx := srtpCtx(t, "AES_CM_128_HMAC_SHA1_80", relayKey(t, c.answerToCaller, "AES_CM_128_HMAC_SHA1_80"))
	const ssrc = 0x5151
	for i := 0; i < 3; i++ {
		c.agent.send(c.toAgent, seal(t, agentTx, rtpPacket(ssrc, uint16(10+i), uint32(i*160), make([]byte, 160))))
		got, _, err := c.caller.recv(5 * time.Second)
		if err != nil {
			t.Fatalf("audio %d not relayed: %v", i, err)
		}
		if _, err := callerRx.DecryptRTP(nil, got, nil); err != nil {
			t.Fatalf("audio %d: %v", i, err)
		}
	}
	if err := c.s.SendDTMF(true, "5", 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ { // one digit: 8 + 2 end packets
		got, _, err := c.caller.recv(5 * time.Second)
		if err != nil {
			t.Fatalf("event packet %d: %v", i, err)
		}
		plain, err := callerRx.DecryptRTP(nil, got, nil)
		if err != nil {
			t.Fatalf("event packet %d is not SRTP with the relay's key: %v", i, err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(plain); err != nil {
			t.Fatal(err)
		}
		if p.PayloadType != 101 || p.SSRC != ssrc || p.SequenceNumber != uint16(13+i) || p.Payload[0] != 5 {
			t.Fatalf("event packet %d: pt %d ssrc %x seq %d event %d", i, p.PayloadType, p.SSRC, p.SequenceNumber, p.Payload[0])
		}
	}
}
