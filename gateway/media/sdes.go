package media

import (
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
)

// SDES (RFC 4568): the a=crypto attributes of an SDP media description,
// parsed and generated. Keys are secrets: nothing here logs them, and
// cryptoAttr has no String method that would print one.

// cryptoSuite is an SRTP crypto suite callgate speaks.
type cryptoSuite struct {
	name    string // as in a=crypto (RFC 4568 6.2, RFC 7714 14.2)
	profile srtp.ProtectionProfile
	keyLen  int // master key bytes
	saltLen int // master salt bytes
}

// suites in the order callgate offers them. AES_CM_128_HMAC_SHA1_80 is
// first: every SDES peer speaks it.
var suites = []*cryptoSuite{
	{"AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80, 16, 14},
	{"AEAD_AES_128_GCM", srtp.ProtectionProfileAeadAes128Gcm, 16, 12},
	{"AES_CM_128_HMAC_SHA1_32", srtp.ProtectionProfileAes128CmHmacSha1_32, 16, 14},
}

func suiteNamed(name string) *cryptoSuite {
	for _, s := range suites {
		if strings.EqualFold(s.name, name) {
			return s
		}
	}
	return nil
}

// cryptoAttr is one a=crypto line: tag, suite and inline master key||salt.
type cryptoAttr struct {
	tag   int
	suite *cryptoSuite
	key   []byte // master key || master salt
}

// maxCryptoLine caps what is parsed of one a=crypto value.
const maxCryptoLine = 512

// parseCrypto parses the value of an a=crypto attribute
// ("<tag> <suite> inline:<key||salt>[|lifetime][|MKI:len] [params]").
// ok is false for a line callgate does not use: an unknown suite, a bad
// key, several keys, an MKI, or session parameters (UNENCRYPTED_SRTP,
// KDR, ...) that would change the protection. Such a line is ignored, as
// RFC 4568 7.1.1 lets an answerer ignore lines it does not support.
func parseCrypto(v string) (cryptoAttr, bool) {
	if len(v) > maxCryptoLine {
		return cryptoAttr{}, false
	}
	f := strings.Fields(v)
	if len(f) != 3 { // session parameters: not supported
		return cryptoAttr{}, false
	}
	if len(f[0]) == 0 || len(f[0]) > 9 {
		return cryptoAttr{}, false
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil || tag < 0 {
		return cryptoAttr{}, false
	}
	suite := suiteNamed(f[1])
	if suite == nil {
		return cryptoAttr{}, false
	}
	kp := f[2]
	if strings.Contains(kp, ";") { // several keys
		return cryptoAttr{}, false
	}
	method, rest, ok := strings.Cut(kp, ":")
	if !ok || !strings.EqualFold(method, "inline") {
		return cryptoAttr{}, false
	}
	parts := strings.Split(rest, "|")
	if len(parts) > 2 { // lifetime and MKI, or more: an MKI is not supported
		return cryptoAttr{}, false
	}
	if len(parts) == 2 && strings.Contains(parts[1], ":") { // MKI:len without lifetime
		return cryptoAttr{}, false
	}
	want := suite.keyLen + suite.saltLen
	key, err := base64.StdEncoding.DecodeString(parts[0])
	if err != nil {
		// some peers leave the padding out
		key, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(parts[0], "="))
	}
	if err != nil || len(key) != want {
		return cryptoAttr{}, false
	}
	return cryptoAttr{tag: tag, suite: suite, key: key}, true
}

// value formats the attribute value ("1 AES_CM_128_HMAC_SHA1_80 inline:...").
func (c *cryptoAttr) value() string {
	return strconv.Itoa(c.tag) + " " + c.suite.name + " inline:" + base64.StdEncoding.EncodeToString(c.key)
}

// newKey returns a fresh master key||salt for suite from crypto/rand.
func newKey(suite *cryptoSuite) ([]byte, error) {
	k := make([]byte, suite.keyLen+suite.saltLen)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return k, nil
}

// secureMedia is what one SDP says about securing its audio stream.
type secureMedia struct {
	protos  []string     // m= proto parts ("RTP", "SAVP")
	savp    bool         // proto is a secure profile (RTP/SAVP, RTP/SAVPF, UDP/TLS/RTP/SAVP)
	dtls    bool         // UDP/TLS/... or a=fingerprint: DTLS-SRTP
	cryptos []cryptoAttr // usable a=crypto lines, in the order given
	fp      *fingerprint // a=fingerprint (sha-256) for DTLS-SRTP (dtls.go)
	setup   string       // a=setup: actpass, active, passive
	version uint64       // o= session version
}

// audioMedia returns the first active audio stream (as rewriteSDP picks it).
func audioMedia(sd *sdp.SessionDescription) *sdp.MediaDescription {
	for _, md := range sd.MediaDescriptions {
		if md != nil && strings.EqualFold(md.MediaName.Media, "audio") && md.MediaName.Port.Value != 0 {
			return md
		}
	}
	return nil
}

// readSecure reads the security of the first active audio stream of raw.
func readSecure(raw []byte) (*secureMedia, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(raw); err != nil {
		return nil, &sdpError{what: "parse", err: err}
	}
	md := audioMedia(&sd)
	if md == nil {
		return nil, &sdpError{what: "no active audio stream (m=audio with a port)"}
	}
	sm := &secureMedia{protos: md.MediaName.Protos, version: sd.Origin.SessionVersion}
	for _, p := range md.MediaName.Protos {
		switch strings.ToUpper(p) {
		case "SAVP", "SAVPF":
			sm.savp = true
		case "TLS", "DTLS":
			sm.dtls = true
		}
	}
	for _, a := range append(md.Attributes, sd.Attributes...) {
		switch attrKey(a.Key) {
		case "crypto":
			if c, ok := parseCrypto(a.Value); ok {
				sm.cryptos = append(sm.cryptos, c)
			}
		case "fingerprint":
			sm.dtls = true
			if fp, ok := parseFingerprint(a.Value); ok && sm.fp == nil {
				sm.fp = &fp
			}
		case "setup":
			if sm.setup == "" {
				sm.setup = strings.ToLower(strings.TrimSpace(a.Value))
			}
		}
	}
	return sm, nil
}

// setSecure rewrites the first active audio stream of raw: its proto
// becomes protos and its a=crypto lines (and any DTLS attributes) are
// replaced by cryptos.
func setSecure(raw []byte, protos []string, cryptos []cryptoAttr, extra ...sdp.Attribute) ([]byte, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(raw); err != nil {
		return nil, &sdpError{what: "parse", err: err}
	}
	md := audioMedia(&sd)
	if md == nil {
		return nil, &sdpError{what: "no active audio stream (m=audio with a port)"}
	}
	md.MediaName.Protos = protos
	md.Attributes = dropSecure(md.Attributes)
	sd.Attributes = dropSecure(sd.Attributes)
	for i := range cryptos {
		md.Attributes = append(md.Attributes, sdp.Attribute{Key: "crypto", Value: cryptos[i].value()})
	}
	md.Attributes = append(md.Attributes, extra...)
	out, err := sd.Marshal()
	if err != nil {
		return nil, &sdpError{what: "marshal", err: err}
	}
	return out, nil
}

// secureAttrs are the attributes that key a stream: they are replaced
// when the relay terminates SRTP.
var secureAttrs = map[string]bool{"crypto": true, "fingerprint": true, "setup": true, "tls-id": true}

func dropSecure(attrs []sdp.Attribute) []sdp.Attribute {
	out := attrs[:0]
	for _, a := range attrs {
		if !secureAttrs[attrKey(a.Key)] {
			out = append(out, a)
		}
	}
	return out
}

var (
	protoAVP  = []string{"RTP", "AVP"}
	protoSAVP = []string{"RTP", "SAVP"}
)
