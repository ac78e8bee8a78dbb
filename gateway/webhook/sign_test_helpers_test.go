package webhook

import (
	"crypto/ed25519"
	"encoding/base64"
)

func signTelnyx(priv ed25519.PrivateKey, ts string, body []byte) string {
	msg := append([]byte(ts+"|"), body...)
	return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg))
}
