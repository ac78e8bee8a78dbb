package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Limits of the headers a hook may add to the forwarded INVITE.
const (
	MaxHeaders     = 10
	MaxHeaderValue = 256
	maxHeaderName  = 64
	maxReason      = 128
)

// parseHeaders validates a hook's "headers" object: at most MaxHeaders
// names, each "X-" plus token characters (RFC 3261) and not callgate's own
// X-Callgate-*, or User-to-User (the SIP edge then holds them to the
// workspace's sip_headers allow-list), each value a string of at most MaxHeaderValue printable
// ASCII characters (no CR, LF or other control characters). The result is
// sorted by name (the object's order is not kept by JSON decoding).
func parseHeaders(raw json.RawMessage) ([]Header, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errors.New("must be an object of header names to string values")
	}
	if len(m) > MaxHeaders {
		return nil, fmt.Errorf("%d headers: at most %d", len(m), MaxHeaders)
	}
	hs := make([]Header, 0, len(m))
	seen := make(map[string]bool, len(m))
	for name, rv := range m {
		if err := checkHeaderName(name); err != nil {
			return nil, err
		}
		low := strings.ToLower(name)
		if seen[low] {
			return nil, fmt.Errorf("header %q given twice", name)
		}
		seen[low] = true
		var v string
		if err := json.Unmarshal(rv, &v); err != nil {
			return nil, fmt.Errorf("header %q: the value must be a string", name)
		}
		if !printable(v, MaxHeaderValue) {
			return nil, fmt.Errorf("header %q: the value must be at most %d printable ASCII characters (no CR/LF)", name, MaxHeaderValue)
		}
		hs = append(hs, Header{Name: name, Value: v})
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].Name < hs[j].Name })
	return hs, nil
}

func checkHeaderName(n string) error {
	if strings.EqualFold(n, "User-to-User") {
		return nil // RFC 7433, in the default allow-list with X-*
	}
	if len(n) < 3 || len(n) > maxHeaderName || !strings.EqualFold(n[:2], "x-") {
		return fmt.Errorf("header %q: names must start with X- (at most %d characters)", truncate(n, maxHeaderName), maxHeaderName)
	}
	if len(n) >= 11 && strings.EqualFold(n[:11], "x-callgate-") {
		return fmt.Errorf("header %q: X-Callgate-* headers are callgate's own", n)
	}
	for i := 0; i < len(n); i++ {
		if !isTokenChar(n[i]) {
			return fmt.Errorf("header %q: names are token characters (letters, digits, -.!%%*_+`'~)", truncate(n, maxHeaderName))
		}
	}
	return nil
}

// isTokenChar: RFC 3261 token.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}

// printable: at most max bytes, each 0x20..0x7e.
func printable(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
