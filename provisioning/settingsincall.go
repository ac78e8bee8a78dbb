package provisioning

import (
	"strconv"
	"strings"

	"github.com/callgate/callgate/routing"
)

// Workspace settings for what happens during a call (issue 18): which SIP
// headers pass between caller and agent, and mixed SRTP/RTP calls.

// MaxHeaderPatterns bounds sip_headers.allow and sip_headers.keep.
const MaxHeaderPatterns = 50

// SIPHeaders is a workspace's header policy; Allow nil means the default
// (X-*, User-to-User).
type SIPHeaders struct {
	Allow []string `json:"allow"`
	Keep  []string `json:"keep"`
}

// MediaSettings are a workspace's media settings.
type MediaSettings struct {
	// AllowMixedSRTP lets a call be SRTP on one side and RTP on the other.
	AllowMixedSRTP bool `json:"allow_mixed_srtp"`
}

// sipHeadersPatch is sip_headers in PATCH /v1/workspace.
type sipHeadersPatch struct {
	Allow *[]string `json:"allow"`
	Keep  *[]string `json:"keep"`
}

type mediaPatch struct {
	AllowMixedSRTP *bool `json:"allow_mixed_srtp"`
}

// checkHeaderPatterns validates header names ("X-Acme-Ticket") and
// prefixes ("X-Acme-*").
func checkHeaderPatterns(v *ValidationError, field string, ps []string) []string {
	if len(ps) > MaxHeaderPatterns {
		v.Add(field, "at most %d header names", MaxHeaderPatterns)
		return nil
	}
	out := make([]string, 0, len(ps))
	for i, p := range ps {
		name := strings.TrimSuffix(p, "*")
		if name == "" || len(p) > 64 || !isHeaderToken(name) {
			v.Add(field+"["+strconv.Itoa(i)+"]", "%q is not a header name (letters, digits and '-', optionally ending in '*')", clipString(p, 20))
			continue
		}
		out = append(out, p)
	}
	return out
}

func isHeaderToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (p *sipHeadersPatch) apply(v *ValidationError, h *SIPHeaders) {
	if p.Allow != nil {
		h.Allow = checkHeaderPatterns(v, "sip_headers.allow", *p.Allow)
	}
	if p.Keep != nil {
		h.Keep = checkHeaderPatterns(v, "sip_headers.keep", *p.Keep)
	}
}

func (h SIPHeaders) routing() routing.SIPHeaders {
	r := routing.SIPHeaders{Keep: append([]string(nil), h.Keep...)}
	if h.Allow != nil {
		r.Allow = append([]string{}, h.Allow...)
	}
	return r
}

// view fills the defaults in for GET /v1/workspace.
func (h SIPHeaders) view() SIPHeaders {
	if h.Allow == nil {
		h.Allow = append([]string(nil), routing.DefaultHeaderAllow...)
	}
	if h.Keep == nil {
		h.Keep = []string{}
	}
	return h
}
