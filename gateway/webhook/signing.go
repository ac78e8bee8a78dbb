package webhook

import (
	"net/http"

	"github.com/callgate/callgate/sign"
)

// deliverySecret is workspace ws's webhook secret (routing.Workspace,
// from the current snapshot) as bytes; nil when it has none.
func (h *Handler) deliverySecret(ws string) []byte {
	w := h.table.Load().Workspace(ws)
	if w == nil || w.WebhookSecret == "" {
		return nil
	}
	return []byte(w.WebhookSecret)
}

// signDelivery adds X-Callgate-Signature (package sign) over body at
// this attempt's time; a workspace without a secret sends unsigned.
func (h *Handler) signDelivery(req *http.Request, body, secret []byte) {
	if len(secret) == 0 {
		return
	}
	req.Header.Set(sign.HeaderName, sign.Header(secret, h.now(), body))
}
