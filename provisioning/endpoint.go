package provisioning

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// An agent endpoint's URI goes onto the wire as it is stored: it is the
// Request-URI of the INVITE the SIP edge forwards, the target of OPTIONS
// probes and the body of TwiML's <Sip> and Telnyx's transfer. So it is
// parsed strictly and stored re-serialised from what was parsed, never as
// the client wrote it.

// maxEndpointURI bounds an endpoint URI's length.
const maxEndpointURI = 512

// endpointParams are the URI parameters an endpoint may carry.
var endpointParams = map[string]bool{"transport": true, "user": true}

// CanonicalEndpointURI parses an agent endpoint URI strictly and returns
// it re-serialised from its parts: scheme sip or sips (lower case), an
// optional user (RFC 3261 characters, %-escapes that are not control
// characters), a host (IPv4, [IPv6] or a DNS name), an optional port
// 1-65535 and the parameters transport (udp, tcp, tls) and user. No
// password, no URI headers, no control characters, spaces or non-ASCII
// bytes anywhere. The error says what is wrong, for a 400.
func CanonicalEndpointURI(raw string) (string, error) {
	if len(raw) > maxEndpointURI {
		return "", fmt.Errorf("must be at most %d characters", maxEndpointURI)
	}
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("must not contain control characters (found %q at byte %d)", c, i)
		case c == ' ':
			return "", fmt.Errorf("must not contain spaces (found one at byte %d)", i)
		case c >= 0x80:
			return "", fmt.Errorf("must be ASCII: percent-encode other characters in the user part (byte %d)", i)
		}
	}
	scheme, rest, ok := strings.Cut(raw, ":")
	scheme = strings.ToLower(scheme)
	if !ok || (scheme != "sip" && scheme != "sips") {
		return "", errors.New("must be a sip: or sips: URI such as sip:bot@127.0.0.1:5090;transport=udp")
	}
	if strings.Contains(rest, "?") {
		return "", errors.New("must not carry URI headers (?name=value): they would become headers of the forwarded request")
	}
	user := ""
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user, rest = rest[:at], rest[at+1:]
		if err := checkURIUser(user); err != nil {
			return "", err
		}
	}
	hostport, params, _ := strings.Cut(rest, ";")
	host, port, err := splitHostPort(hostport)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.Grow(len(raw))
	b.WriteString(scheme)
	b.WriteByte(':')
	if user != "" {
		b.WriteString(user)
		b.WriteByte('@')
	}
	b.WriteString(host)
	if port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(port))
	}
	transport, userParam := "", ""
	if params != "" {
		for _, p := range strings.Split(params, ";") {
			name, value, _ := strings.Cut(p, "=")
			name = strings.ToLower(name)
			if !endpointParams[name] {
				return "", fmt.Errorf("URI parameter %q is not supported here (only transport and user are)", name)
			}
			value = strings.ToLower(value)
			switch name {
			case "transport":
				if transport != "" {
					return "", errors.New("transport is given twice")
				}
				switch value {
				case "udp", "tcp", "tls":
				default:
					return "", fmt.Errorf("transport %q is not supported: use udp, tcp or tls", value)
				}
				transport = value
			case "user":
				if userParam != "" {
					return "", errors.New("user parameter is given twice")
				}
				if value != "phone" && value != "ip" {
					return "", errors.New("user parameter must be phone or ip")
				}
				userParam = value
			}
		}
	}
	if scheme == "sips" && transport == "udp" {
		return "", errors.New("a sips: URI needs transport tcp or tls, not udp")
	}
	if transport != "" {
		b.WriteString(";transport=")
		b.WriteString(transport)
	}
	if userParam != "" {
		b.WriteString(";user=")
		b.WriteString(userParam)
	}
	out := b.String()
	// What the edges will parse must be what was checked.
	var u sip.Uri
	if err := sip.ParseUri(out, &u); err != nil || u.User != user || u.Password != "" || u.Host != host ||
		u.Port != port || u.Headers.Length() != 0 {
		return "", errors.New("not a valid SIP URI")
	}
	return out, nil
}

// checkURIUser checks the user part: RFC 3261 user characters without
// ';' and '?', escapes that decode to no control character, no password.
func checkURIUser(user string) error {
	if user == "" {
		return errors.New("has an empty user part before '@': give a user (sip:bot@host) or none (sip:host)")
	}
	if strings.Contains(user, ":") {
		return errors.New("must not contain a password (user:password@): callgate sends no credentials to agent endpoints; let the agent accept calls from the gateway's addresses instead")
	}
	if len(user) > 128 {
		return errors.New("user part must be at most 128 characters")
	}
	for i := 0; i < len(user); i++ {
		c := user[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-_.!~*'()&=+$,/", c) >= 0:
		case c == '%':
			if i+2 >= len(user) || !isHex(user[i+1]) || !isHex(user[i+2]) {
				return errors.New("user part has a bad %-escape (want %HH)")
			}
			if v := unhex(user[i+1])<<4 | unhex(user[i+2]); v < 0x20 || v == 0x7f {
				return fmt.Errorf("user part must not contain control characters (found escaped %%%02X)", v)
			}
			i += 2
		default:
			return fmt.Errorf("user part must not contain %q (percent-encode it)", c)
		}
	}
	return nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// splitHostPort splits "host[:port]" of a SIP URI and checks both. An
// IPv6 host keeps its brackets; a name is lower-cased. port is 0 when
// absent.
func splitHostPort(hp string) (host string, port int, err error) {
	rest := ""
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", 0, errors.New("host: unclosed [ of an IPv6 address")
		}
		a, perr := netip.ParseAddr(hp[1:end])
		if perr != nil || !a.Is6() || a.Zone() != "" {
			return "", 0, fmt.Errorf("host %q is not an IPv6 address", hp[:end+1])
		}
		if err := checkHostIP(a); err != nil {
			return "", 0, err
		}
		host, rest = "["+a.String()+"]", hp[end+1:]
	} else {
		h, _, _ := strings.Cut(hp, ":")
		host, rest = strings.ToLower(h), hp[len(h):]
		if host == "" {
			return "", 0, errors.New("has no host: give one, as in sip:bot@127.0.0.1:5090")
		}
		if a, perr := netip.ParseAddr(host); perr == nil {
			if !a.Is4() {
				return "", 0, fmt.Errorf("host %q: write an IPv6 address in brackets", host)
			}
			if err := checkHostIP(a); err != nil {
				return "", 0, err
			}
		} else if !validHostname(host) {
			return "", 0, fmt.Errorf("host %q is not an IP address or a DNS name", host)
		}
	}
	if rest == "" {
		return host, 0, nil
	}
	ps, ok := strings.CutPrefix(rest, ":")
	if !ok {
		return "", 0, fmt.Errorf("unexpected %q after the host", rest)
	}
	if ps == "" || len(ps) > 5 || strings.Trim(ps, "0123456789") != "" {
		return "", 0, fmt.Errorf("port %q must be a number from 1 to 65535", ps)
	}
	port, _ = strconv.Atoi(ps)
	if port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %d must be from 1 to 65535", port)
	}
	return host, port, nil
}

func checkHostIP(a netip.Addr) error {
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fmt.Errorf("host %s is not an address a call can be sent to", a)
	}
	return nil
}

// validHostname: labels of letters, digits and '-' (not at either end),
// 1-63 characters each, 253 in all; the last label is not all digits.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// sipSelf is where this gateway's SIP edge can be reached: an endpoint
// there would send the gateway's calls back to itself.
type sipSelf struct {
	exact    map[string]bool // "host|port": listen IPs and advertised host
	anyPorts map[int]bool    // ports of wildcard listeners
	local    map[netip.Addr]bool
}

// SetSIPSelf tells the service this gateway's own SIP addresses (its
// listeners, as bound, and the host it advertises), so that an agent
// endpoint pointing at the gateway itself is refused. Safe to call again
// (once the listeners are bound) and concurrently with requests.
func (s *Service) SetSIPSelf(advertiseHost string, listen ...netip.AddrPort) {
	self := &sipSelf{exact: map[string]bool{}, anyPorts: map[int]bool{}, local: map[netip.Addr]bool{}}
	adv := ""
	if h := strings.ToLower(strings.Trim(strings.TrimSpace(advertiseHost), "[]")); h != "" {
		if a, err := netip.ParseAddr(h); err == nil {
			adv = hostKey(a.Unmap())
		} else {
			adv = strings.TrimSuffix(h, ".")
		}
	}
	wildcard := false
	for _, ap := range listen {
		if !ap.IsValid() || ap.Port() == 0 {
			continue
		}
		port := int(ap.Port())
		a := ap.Addr().Unmap()
		if a.IsUnspecified() {
			self.anyPorts[port] = true
			wildcard = true
		} else {
			self.exact[hostKey(a)+"|"+strconv.Itoa(port)] = true
		}
		if adv != "" {
			self.exact[adv+"|"+strconv.Itoa(port)] = true
		}
	}
	if wildcard {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, ia := range addrs {
				if p, err := netip.ParsePrefix(ia.String()); err == nil {
					self.local[p.Addr().Unmap()] = true
				}
			}
		}
	}
	s.self.Store(self)
}

func hostKey(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// isSelf reports whether a canonical endpoint URI points at this gateway.
func (self *sipSelf) isSelf(canonical string) bool {
	var u sip.Uri
	if self == nil || sip.ParseUri(canonical, &u) != nil {
		return false
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if t, _ := u.UriParams.Get("transport"); u.Scheme == "sips" || t == "tls" {
			port = 5061
		}
	}
	host := u.Host
	hosts := []string{host}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		hosts = []string{"127.0.0.1", "[::1]", host}
	}
	for _, h := range hosts {
		if self.exact[h+"|"+strconv.Itoa(port)] {
			return true
		}
		if self.anyPorts[port] {
			if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil && (a.IsLoopback() || self.local[a.Unmap()]) {
				return true
			}
			if h == "localhost" {
				return true
			}
		}
	}
	return false
}

// CheckEndpoint is CanonicalEndpointURI plus the refusal of this
// gateway's own SIP addresses (see SetSIPSelf).
func (s *Service) CheckEndpoint(raw string) (string, error) {
	out, err := CanonicalEndpointURI(raw)
	if err != nil {
		return "", err
	}
	if s.self.Load().isSelf(out) {
		return "", errors.New("points at this gateway's own SIP address: calls would loop; give the agent's address")
	}
	return out, nil
}

// selfPtr holds the service's sipSelf.
type selfPtr = atomic.Pointer[sipSelf]
