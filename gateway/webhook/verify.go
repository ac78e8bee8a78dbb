package webhook

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/callgate/callgate/routing"
)

// ErrReplayed is a Telnyx webhook whose signature was already accepted.
var ErrReplayed = errors.New("webhook: signature already used (replay)")

// requestReadTimeout bounds reading one webhook request, whatever server
// it is mounted on.
const requestReadTimeout = 10 * time.Second

// dummyKeys are keys nobody holds: a request whose number has no
// integration key is checked against them, so that it costs the same as
// one that has (no timing difference between provisioned and unknown
// numbers).
type dummyKeys struct{ twilio, telnyx string }

func newDummyKeys() dummyKeys {
	var b [32]byte
	_, _ = rand.Read(b[:])
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	return dummyKeys{twilio: base64.RawURLEncoding.EncodeToString(b[:]), telnyx: base64.StdEncoding.EncodeToString(pub)}
}

// verify checks the signature before anything about the call is looked at
// or answered. The key is the operator's (webhook.twilio.auth_token,
// webhook.telnyx.public_key); failing that, the key of the integration
// that owns the called number (lookup; imports in full_control point the
// carrier at the same URLs). A number that is unknown, or has no
// integration, is checked against a key nobody holds: every failure is the
// same 403 at the same cost, so a bad signature tells nothing about which
// numbers are provisioned. A Telnyx signature is accepted once.
func (h *Handler) verify(telnyx bool, snap *routing.Snapshot, r *http.Request, params *form, body []byte, lookup func() *routing.Number) error {
	err := h.checkSignature(telnyx, h.operatorKey(telnyx), r, params, body)
	if errors.Is(err, ErrNoSignature) || errors.Is(err, ErrStaleTimestamp) {
		return err
	}
	// Signed by the operator, or not: either way the number decides
	// whose signature counts (the operator's only for numbers without an
	// integration), and the same work is done whatever the number is.
	key := ""
	if n := lookup(); n != nil && n.IntegrationID != "" {
		if telnyx {
			key = h.telnyxKey(snap, n)
		} else {
			key = h.twilioToken(snap, n)
		}
		if err == nil && key != h.operatorKey(telnyx) {
			err = ErrBadSignature // the operator's signature on a customer's number
		}
	}
	if err != nil {
		if key == "" {
			key = h.dummy.twilio
			if telnyx {
				key = h.dummy.telnyx
			}
		}
		if err2 := h.checkSignature(telnyx, key, r, params, body); err2 == nil {
			err = nil
		} else if !errors.Is(err, ErrBadSignature) {
			err = err2
		}
	}
	if err != nil {
		return err
	}
	if telnyx {
		ts, _ := strconv.ParseInt(r.Header.Get("Telnyx-Timestamp"), 10, 64)
		expiry := time.Unix(ts, 0).Add(h.cfg.TimestampTolerance + time.Second)
		if !h.replays.firstUse(r.Header.Get("Telnyx-Signature-Ed25519"), h.now(), expiry) {
			return ErrReplayed
		}
	}
	return nil
}

func (h *Handler) operatorKey(telnyx bool) string {
	if telnyx {
		return h.cfg.Telnyx.PublicKey
	}
	return h.cfg.Twilio.AuthToken
}

func (h *Handler) checkSignature(telnyx bool, key string, r *http.Request, params *form, body []byte) error {
	if telnyx {
		return VerifyTelnyx(key, r.Header.Get("Telnyx-Signature-Ed25519"),
			r.Header.Get("Telnyx-Timestamp"), body, h.now(), h.cfg.TimestampTolerance)
	}
	return verifyTwilio(key, h.signedURL(r), r.Header.Get("X-Twilio-Signature"), params, body)
}

// refuse ends a refused request's connection: the rest of its body is not
// read (the server would otherwise drain up to 256 KiB of it, at the
// sender's pace) and the connection is not kept alive.
func refuse(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}
