package provisioning

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"net/url"
	"strings"

	"github.com/callgate/callgate/routing"
)

// Routing hook bounds.
const (
	HookDefaultTimeoutMS = 1500
	HookMaxTimeoutMS     = 5000
	hookMaxURL           = 2048
)

// Hook is a routing hook as the API shows and takes it.
type Hook struct {
	URL       string `json:"url"`
	TimeoutMS int    `json:"timeout_ms"`
	OnFailure string `json:"on_failure"`
}

// hookPatch is a routing hook in a PATCH body: absent fields keep the
// current value (or the default when there is no hook yet).
type hookPatch struct {
	URL       *string `json:"url"`
	TimeoutMS *int    `json:"timeout_ms"`
	OnFailure *string `json:"on_failure"`
}

// isNull reports whether a present JSON value is null.
func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// decodeStrict decodes raw into v refusing unknown fields; errors are
// reported on field.
func decodeStrict(v *ValidationError, field string, raw json.RawMessage, dst any) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
			v.Add(field+"."+strings.Trim(name, `"`), "unknown field")
			return false
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			v.Add(field+"."+te.Field, "must be %s", jsonKind(te.Type.String()))
			return false
		}
		v.Add(field, "must be an object: %s", strings.TrimPrefix(msg, "json: "))
		return false
	}
	return true
}

func jsonKind(t string) string {
	switch {
	case strings.Contains(t, "int"), strings.Contains(t, "float"):
		return "a number"
	case strings.Contains(t, "string"):
		return "a string"
	case strings.Contains(t, "bool"):
		return "a boolean"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	}
	return "an object"
}

// applyHookPatch merges a routing_hook value of a PATCH body (raw, present)
// onto cur. A JSON null removes the hook (nil).
func applyHookPatch(v *ValidationError, field string, cur *Hook, raw json.RawMessage) *Hook {
	if isNull(raw) {
		return nil
	}
	var p hookPatch
	if !decodeStrict(v, field, raw, &p) {
		return cur
	}
	h := Hook{TimeoutMS: HookDefaultTimeoutMS, OnFailure: routing.HookOnFailureStatic}
	if cur != nil {
		h = *cur
	}
	if p.URL != nil {
		h.URL = *p.URL
	}
	if p.TimeoutMS != nil {
		h.TimeoutMS = *p.TimeoutMS
	}
	if p.OnFailure != nil {
		h.OnFailure = *p.OnFailure
	}
	checkHook(v, field, &h)
	return &h
}

// checkHook validates a hook (and canonicalises its URL).
func checkHook(v *ValidationError, field string, h *Hook) {
	if u, err := CheckHookURL(h.URL); err != nil {
		v.Add(field+".url", "%s", err.Error())
	} else {
		h.URL = u
	}
	if h.TimeoutMS < 1 || h.TimeoutMS > HookMaxTimeoutMS {
		v.Add(field+".timeout_ms", "must be between 1 and %d (milliseconds; default %d)", HookMaxTimeoutMS, HookDefaultTimeoutMS)
	}
	switch h.OnFailure {
	case routing.HookOnFailureStatic, routing.HookOnFailureReject:
	default:
		v.Add(field+".on_failure", `must be "static" (route as without a hook) or "reject" (refuse the call)`)
	}
}

type hookURLError string

func (e hookURLError) Error() string { return string(e) }

// CheckHookURL checks a URL callgate will POST to (routing hooks): https,
// or http to a loopback host only (local development and tests); no
// userinfo, no fragment, at most 2048 characters. It returns the URL as
// parsed and re-serialised.
func CheckHookURL(raw string) (string, error) {
	if raw == "" {
		return "", hookURLError("required")
	}
	if len(raw) > hookMaxURL {
		return "", hookURLError("must be at most 2048 characters")
	}
	for _, c := range raw {
		if c <= ' ' || c == 0x7f {
			return "", hookURLError("must not hold spaces or control characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", hookURLError("not a URL")
	}
	if u.User != nil {
		return "", hookURLError("must not hold a user name or password (callgate signs its requests: X-Callgate-Signature)")
	}
	if u.Fragment != "" || u.Opaque != "" {
		return "", hookURLError("must be an absolute https:// URL without a fragment")
	}
	host := u.Hostname()
	if host == "" {
		return "", hookURLError("must name a host")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopbackHost(host) {
			return "", hookURLError("must be https:// (http:// only to a loopback host such as 127.0.0.1)")
		}
	default:
		return "", hookURLError("must be an https:// URL")
	}
	return u.String(), nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

func (h *Hook) routing() *routing.Hook {
	if h == nil {
		return nil
	}
	return &routing.Hook{URL: h.URL, TimeoutMS: h.TimeoutMS, OnFailure: h.OnFailure}
}
