package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

// Message is an inbound SMS/MMS as published on NATS
// (callgate.messages.<digits of the gateway number>) and POSTed as JSON to
// the agent's messaging URL.
type Message struct {
	ID         string    `json:"id"`      // carrier message id (Twilio MessageSid, Telnyx id)
	Carrier    string    `json:"carrier"` // twilio, telnyx
	From       string    `json:"from"`
	To         string    `json:"to"` // the gateway number, E.164
	Body       string    `json:"body"`
	Media      []Media   `json:"media,omitempty"`
	Workspace  string    `json:"workspace,omitempty"`
	Agent      string    `json:"agent,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
}

// Media is one attachment of an MMS.
type Media struct {
	URL         string `json:"url"`
	ContentType string `json:"content_type,omitempty"`
}

// MessageSubject is the NATS subject for messages to the gateway number
// e164: callgate.messages.<digits>.
func MessageSubject(e164 string) string {
	return "callgate.messages." + strings.TrimPrefix(e164, "+")
}

// acceptMessage publishes msg for route's number and queues its delivery
// to the agent's messaging URL. Suspended numbers take no messages.
func (h *Handler) acceptMessage(route *routing.Route, msg Message) string {
	if route.Number.Status == routing.StatusSuspended {
		return ResultSuspended
	}
	msg.Workspace = route.Number.Workspace
	msg.ReceivedAt = h.now().UTC()
	if route.Agent != nil {
		msg.Agent = route.Agent.ID
	}
	if n, ok := normalizeNumber(msg.From); ok {
		msg.From = n
	}
	b, err := json.Marshal(msg)
	if err != nil { // cannot happen with these field types
		return ResultBadRequest
	}
	if h.msgs != nil {
		if err := h.msgs.Publish(MessageSubject(msg.To), b); err != nil {
			h.metrics.Published.WithLabelValues(OutcomeFailed).Inc()
			h.log.Warn("webhook: message not published", "carrier", msg.Carrier, "id", msg.ID,
				"to", phone.Mask(msg.To), "err", err)
		} else {
			h.metrics.Published.WithLabelValues(OutcomeOK).Inc()
		}
	}
	if route.Agent == nil {
		return ResultUnassigned
	}
	if target := route.Agent.MessagingURL; target != "" {
		id, carrier, to := msg.ID, msg.Carrier, msg.To
		secret := h.deliverySecret(route.Number.Workspace)
		if !h.deliveries.enqueue(func(ctx context.Context) { h.deliver(ctx, target, b, secret, carrier, id, to) }) {
			h.metrics.Deliveries.WithLabelValues(OutcomeDropped).Inc()
			h.log.Warn("webhook: message delivery dropped (queue full)", "carrier", carrier, "id", id, "to", phone.Mask(to))
		}
	}
	return ResultOK
}

// deliver POSTs a message to an agent's messaging URL, retrying network
// errors, 429 and 5xx up to Messaging.Attempts times. A URL that resolves
// or redirects to an internal address outside Messaging.AllowNetworks is
// refused at connection time and not retried. Each attempt is signed
// with the workspace's webhook secret (signing.go).
func (h *Handler) deliver(ctx context.Context, target string, body, secret []byte, carrier, id, to string) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		h.metrics.Deliveries.WithLabelValues(OutcomeFailed).Inc()
		h.log.Warn("webhook: agent messaging URL is not an http(s) URL", "carrier", carrier, "id", id)
		return
	}
	var last error
	backoff := 250 * time.Millisecond
	for attempt := 1; attempt <= h.cfg.Messaging.Attempts; attempt++ {
		retry, err := h.deliverOnce(ctx, target, body, secret)
		if err == nil {
			h.metrics.Deliveries.WithLabelValues(OutcomeOK).Inc()
			return
		}
		if re, ok := isRefused(err); ok { // never retried
			h.metrics.Deliveries.WithLabelValues(OutcomeRefused).Inc()
			h.log.Warn("webhook: message delivery refused", "carrier", carrier, "id", id, "to", phone.Mask(to),
				"reason", re.Error())
			return
		}
		last = err
		if !retry || attempt == h.cfg.Messaging.Attempts || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
			attempt = h.cfg.Messaging.Attempts
		case <-time.After(backoff):
			backoff *= 2
		}
	}
	h.metrics.Deliveries.WithLabelValues(OutcomeFailed).Inc()
	h.log.Warn("webhook: message delivery failed", "carrier", carrier, "id", id, "to", phone.Mask(to), "err", last)
}

func (h *Handler) deliverOnce(ctx context.Context, target string, body, secret []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Messaging.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "callgate-webhook")
	h.signDelivery(req, body, secret)
	resp, err := h.client.Do(req)
	if err != nil {
		if _, ok := isRefused(err); ok {
			return false, err
		}
		return true, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("messaging URL answered %s", resp.Status)
	default:
		return false, fmt.Errorf("messaging URL answered %s", resp.Status)
	}
}
