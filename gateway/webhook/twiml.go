package webhook

import (
	"strconv"
	"strings"

	"github.com/callgate/callgate/routing"
)

const xmlHeader = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"

var (
	twimlReject     = []byte(xmlHeader + `<Response><Reject reason="rejected"/></Response>`)
	twimlRejectBusy = []byte(xmlHeader + `<Response><Reject reason="busy"/></Response>`)
	twimlHangup     = []byte(xmlHeader + `<Response><Hangup/></Response>`)
	twimlEmpty      = []byte(xmlHeader + `<Response/>`)
)

// header is one SIP header given to the agent.
type header struct{ Name, Value string }

// agentHeaders are the X-Callgate-* headers for a call to ep.
func agentHeaders(d *routing.Decision, ep routing.Endpoint) []header {
	hs := make([]header, 0, 5)
	hs = append(hs,
		header{HeaderNumber, d.Number},
		header{HeaderAgent, agentOf(d)},
		header{HeaderRegion, ep.Region},
	)
	if d.ForwardedFrom != "" {
		hs = append(hs, header{HeaderForwardedFrom, d.ForwardedFrom})
	}
	if d.OriginalCalled != "" {
		hs = append(hs, header{HeaderOriginalCalled, d.OriginalCalled})
	}
	return hs
}

// sipTarget is the <Sip> URI for ep: the endpoint's URI, an edge URI
// parameter when one is given, and the headers as URI headers
// (sip:bot@host;transport=udp;edge=ashburn?X-Callgate-Number=%2B1228...).
func sipTarget(dst []byte, uri, edge string, hs []header) []byte {
	base, existing, hasQ := strings.Cut(uri, "?")
	dst = append(dst, base...)
	if edge != "" && !hasURIParam(base, "edge") {
		dst = append(dst, ";edge="...)
		dst = append(dst, edge...)
	}
	sep := byte('?')
	if hasQ && existing != "" {
		dst = append(dst, '?')
		dst = append(dst, existing...)
		sep = '&'
	}
	for _, h := range hs {
		dst = append(dst, sep)
		sep = '&'
		dst = append(dst, h.Name...)
		dst = append(dst, '=')
		dst = appendHeaderValue(dst, h.Value)
	}
	return dst
}

func hasURIParam(uri, name string) bool {
	for _, p := range strings.Split(uri, ";")[1:] {
		k, _, _ := strings.Cut(p, "=")
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// appendHeaderValue escapes v for a SIP URI header value (RFC 3261 hvalue),
// escaping '+' too so that no URL decoder can read it as a space.
func appendHeaderValue(dst []byte, v string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
			strings.IndexByte("-_.!~*'()[]/:$", c) >= 0 {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}

// appendXMLText escapes s for XML text and attribute values.
func appendXMLText[T ~string | ~[]byte](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '&':
			dst = append(dst, "&amp;"...)
		case '<':
			dst = append(dst, "&lt;"...)
		case '>':
			dst = append(dst, "&gt;"...)
		case '"':
			dst = append(dst, "&quot;"...)
		case '\'':
			dst = append(dst, "&apos;"...)
		default:
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				continue // not allowed in XML 1.0
			}
			dst = append(dst, c)
		}
	}
	return dst
}

// dialDoc describes a <Dial><Sip> document.
type dialDoc struct {
	answerOnBridge bool
	ringSeconds    int
	base           string // public URL, prefix of the callback URLs
	actionPath     string // next attempt's path; empty on the last candidate
	nextAttempt    int
	statusPath     string // <Sip statusCallback> path; empty for none
	number         string // status callback query: number, agent, region, t0
	agent          string
	region         string
	t0             int64
	target         []byte // the SIP URI, unescaped
}

func (d *dialDoc) append(dst []byte) []byte {
	dst = append(dst, xmlHeader...)
	dst = append(dst, "<Response><Dial"...)
	if d.answerOnBridge {
		dst = append(dst, ` answerOnBridge="true"`...)
	}
	if d.ringSeconds > 0 {
		dst = append(dst, ` timeout="`...)
		dst = strconv.AppendInt(dst, int64(d.ringSeconds), 10)
		dst = append(dst, '"')
	}
	if d.actionPath != "" {
		dst = append(dst, ` action="`...)
		dst = appendXMLText(dst, d.base)
		dst = appendXMLText(dst, d.actionPath)
		dst = append(dst, "?attempt="...)
		dst = strconv.AppendInt(dst, int64(d.nextAttempt), 10)
		dst = append(dst, `" method="POST"`...)
	}
	dst = append(dst, "><Sip"...)
	if d.statusPath != "" {
		dst = append(dst, ` statusCallbackEvent="answered completed" statusCallback="`...)
		dst = appendXMLText(dst, d.base)
		dst = appendXMLText(dst, d.statusPath)
		dst = append(dst, "?number="...)
		dst = appendQueryEscape(dst, d.number)
		dst = append(dst, "&amp;agent="...)
		dst = appendQueryEscape(dst, d.agent)
		dst = append(dst, "&amp;region="...)
		dst = appendQueryEscape(dst, d.region)
		dst = append(dst, "&amp;t0="...)
		dst = strconv.AppendInt(dst, d.t0, 10)
		dst = append(dst, `" statusCallbackMethod="POST"`...)
	}
	dst = append(dst, '>')
	dst = appendXMLText(dst, d.target)
	dst = append(dst, "</Sip></Dial></Response>"...)
	return dst
}

// appendQueryEscape escapes s for a URL query value: everything but
// RFC 3986 unreserved characters is percent-encoded (so the result needs
// no XML escaping).
func appendQueryEscape(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~' {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}
