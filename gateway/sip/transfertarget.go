package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/internal/netguard"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/provisioning"
)

// Transfer targets (issue 18): what a REFER's Refer-To or the API's "to"
// names, parsed strictly before anything is sent anywhere.
//
//   - a phone number: tel:+E.164, sip:+E.164@host;user=phone or
//     sip:+E.164@host (a user part starting with '+'; the host is not
//     used: the number leaves through the call's carrier), or a bare
//     +E.164 (API only);
//   - an agent of the call's workspace: sip:agent=<id>@callgate (the host
//     is the literal "callgate"), or agent:<id> (API only);
//   - a SIP URI: validated like an agent endpoint
//     (provisioning.CanonicalEndpointURI) and never an internal IP literal
//     (internal/netguard) nor this gateway's own address.

// Transfer target kinds.
const (
	targetPhone = "phone"
	targetAgent = "agent"
	targetSIP   = "sip"
)

// agentTargetHost is the host of the agent URI form sip:agent=<id>@callgate.
const agentTargetHost = "callgate"

// maxTargetLen bounds a target as given (Refer-To value or API "to").
const maxTargetLen = 512

// transferTarget is a parsed target.
type transferTarget struct {
	kind  string
	e164  string // targetPhone
	agent string // targetAgent: agent id (in the call's workspace)
	uri   string // targetSIP: canonical URI; targetPhone: tel:+E.164
}

// String is the target as events and history show it.
func (t transferTarget) String() string {
	switch t.kind {
	case targetAgent:
		return "sip:agent=" + t.agent + "@" + agentTargetHost
	default:
		return t.uri
	}
}

// errTarget is a target that cannot be parsed; the message says why (for
// a SIP 400 Warning or an API 400 naming "to").
type errTarget struct{ msg string }

func (e *errTarget) Error() string { return e.msg }

func badTarget(format string, a ...any) error { return &errTarget{msg: fmt.Sprintf(format, a...)} }

// parseReferTo parses a Refer-To header value ("<uri>" or a bare URI,
// with optional header parameters after the >).
func parseReferTo(v string) (transferTarget, error) {
	v = strings.TrimSpace(v)
	if len(v) > maxTargetLen {
		return transferTarget{}, badTarget("Refer-To longer than %d characters", maxTargetLen)
	}
	if i := strings.IndexByte(v, '<'); i >= 0 {
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return transferTarget{}, badTarget("Refer-To: unterminated <")
		}
		v = v[i+1 : i+j]
	} else if i := strings.IndexByte(v, ';'); i >= 0 && !strings.HasPrefix(strings.ToLower(v), "sip") && !strings.HasPrefix(strings.ToLower(v), "tel") {
		v = v[:i]
	}
	return parseTargetURI(v, false)
}

// parseAPITarget parses the API's "to": a URI as in Refer-To, a bare
// +E.164 number, or agent:<id>.
func parseAPITarget(v string) (transferTarget, error) {
	v = strings.TrimSpace(v)
	if len(v) > maxTargetLen {
		return transferTarget{}, badTarget("longer than %d characters", maxTargetLen)
	}
	if v == "" {
		return transferTarget{}, badTarget("is required")
	}
	return parseTargetURI(v, true)
}

func parseTargetURI(v string, api bool) (transferTarget, error) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c >= 0x7f {
			return transferTarget{}, badTarget("contains a space, control or non-ASCII character at byte %d", i)
		}
	}
	scheme, rest, ok := strings.Cut(v, ":")
	if !ok {
		if api && strings.HasPrefix(v, "+") {
			return phoneTarget(v)
		}
		return transferTarget{}, badTarget("must be a tel: or sip: URI (tel:+14155550100, sip:agent=<id>@callgate, sip:user@host)")
	}
	switch strings.ToLower(scheme) {
	case "tel":
		num, _, _ := strings.Cut(rest, ";")
		if strings.ContainsAny(num, "?") {
			return transferTarget{}, badTarget("tel: URI must not carry headers")
		}
		return phoneTarget(num)
	case "agent":
		if !api {
			return transferTarget{}, badTarget("agent: is an API form; in SIP use sip:agent=<id>@callgate")
		}
		return agentTarget(rest)
	case "sip", "sips":
	default:
		return transferTarget{}, badTarget("scheme %q not supported: use tel: or sip:", scheme)
	}
	var u sip.Uri
	if err := sip.ParseUri(v, &u); err != nil {
		return transferTarget{}, badTarget("not a SIP URI: %v", err)
	}
	if strings.EqualFold(u.Host, agentTargetHost) {
		id, ok := strings.CutPrefix(u.User, "agent=")
		if !ok {
			return transferTarget{}, badTarget("sip:…@callgate must name an agent: sip:agent=<id>@callgate")
		}
		return agentTarget(id)
	}
	if up, ok := u.UriParams.Get("user"); (ok && strings.EqualFold(up, "phone")) || strings.HasPrefix(u.User, "+") {
		// user=phone, or a global number as the user part (UAs such as
		// baresip leave user=phone out): a phone number, the host unused
		num, _, _ := strings.Cut(u.User, ";") // RFC 3966 parameters in the user part
		return phoneTarget(num)
	}
	canon, err := provisioning.CanonicalEndpointURI(v)
	if err != nil {
		return transferTarget{}, badTarget("SIP URI %s", err.Error())
	}
	if a, err := netip.ParseAddr(strings.Trim(u.Host, "[]")); err == nil {
		if why := netguard.InternalReason(a); why != "" {
			return transferTarget{}, badTarget("SIP URI host is an internal address (%s)", why)
		}
	}
	return transferTarget{kind: targetSIP, uri: canon}, nil
}

func phoneTarget(num string) (transferTarget, error) {
	n := strings.NewReplacer("-", "", ".", "", "(", "", ")", "").Replace(num)
	if !phone.IsE164(n) {
		return transferTarget{}, badTarget("phone number %q must be in E.164 form (+ and country code)", truncate(num, 32))
	}
	if _, _, ok := phone.Classify(n); !ok {
		return transferTarget{}, badTarget("phone number %q is not a valid E.164 number", truncate(num, 32))
	}
	return transferTarget{kind: targetPhone, e164: n, uri: "tel:" + n}, nil
}

func agentTarget(id string) (transferTarget, error) {
	if id == "" || len(id) > 64 {
		return transferTarget{}, badTarget("agent id must be 1-64 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return transferTarget{}, badTarget("agent id may hold only letters, digits, '-', '_' and '.'")
		}
	}
	return transferTarget{kind: targetAgent, agent: id}, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// isTargetErr reports whether err is a target parse error.
func isTargetErr(err error) bool {
	var e *errTarget
	return errors.As(err, &e)
}
