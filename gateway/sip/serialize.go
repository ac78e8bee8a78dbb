package sip

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/sip/transport"
)

// Header lines of a parsed message written as sipgo writes them, without
// its allocations: sipgo's Uri.StringWrite parses an IP host with
// net.ParseIP and formats the port with strconv.Itoa, and its parameter
// writer converts the separator to a string, each time. The INVITE path
// (the forwarded INVITE, the 100 Trying) writes the caller's Via, From,
// To, Contact, Route and Record-Route this way; every other header goes
// to writeHeaderLine. TestWriteHdrLikeSipgo and FuzzWriteHdr hold the
// output to sipgo's byte for byte.

// writeHdr writes one header line (with its CRLF) like writeHeaderLine.
func writeHdr(buf *bytes.Buffer, h sip.Header) {
	switch v := h.(type) {
	case *sip.ViaHeader:
		transport.WriteVia(buf, v)
	case *sip.FromHeader:
		buf.WriteString("From: ")
		writeNameAddr(buf, v.DisplayName, &v.Address, v.Params)
	case *sip.ToHeader:
		buf.WriteString("To: ")
		writeNameAddr(buf, v.DisplayName, &v.Address, v.Params)
	case *sip.ContactHeader:
		buf.WriteString("Contact: ")
		if v.Address.Wildcard {
			buf.WriteByte('*')
			break
		}
		writeNameAddr(buf, v.DisplayName, &v.Address, v.Params)
	case *sip.CallIDHeader:
		buf.WriteString("Call-ID: ")
		buf.WriteString(string(*v))
	case *sip.CSeqHeader:
		buf.WriteString("CSeq: ")
		writeInt(buf, int(v.SeqNo))
		buf.WriteByte(' ')
		buf.WriteString(string(v.MethodName))
	case *sip.RouteHeader:
		buf.WriteString("Route: <")
		writeURI(buf, &v.Address)
		buf.WriteByte('>')
	case *sip.RecordRouteHeader:
		buf.WriteString("Record-Route: <")
		writeURI(buf, &v.Address)
		buf.WriteByte('>')
	default:
		writeHeaderLine(buf, h)
		return
	}
	buf.WriteString("\r\n")
}

// writeNameAddr is sipgo's From/To/Contact value.
func writeNameAddr(buf *bytes.Buffer, display string, u *sip.Uri, ps sip.HeaderParams) {
	if display != "" {
		buf.WriteByte('"')
		buf.WriteString(display)
		buf.WriteString("\" ")
	}
	buf.WriteByte('<')
	writeURI(buf, u)
	buf.WriteByte('>')
	if len(ps) > 0 {
		buf.WriteByte(';')
		transport.WriteParams(buf, ';', ps)
	}
}

// writeURI is sipgo's Uri.StringWrite.
func writeURI(buf *bytes.Buffer, u *sip.Uri) {
	if u.Scheme == "" {
		buf.WriteString("sip")
	} else {
		buf.WriteString(u.Scheme)
	}
	buf.WriteByte(':')
	if raw := u.Raw(); raw != "" {
		buf.WriteString(raw)
		return
	}
	if u.HierarhicalSlashes {
		buf.WriteString("//")
	}
	if u.User != "" {
		buf.WriteString(u.User)
		if u.Password != "" {
			buf.WriteByte(':')
			buf.WriteString(u.Password)
		}
		buf.WriteByte('@')
	}
	if isIPv6Literal(u.Host) {
		buf.WriteByte('[')
		buf.WriteString(u.Host)
		buf.WriteByte(']')
	} else {
		buf.WriteString(u.Host)
	}
	if u.Port > 0 {
		buf.WriteByte(':')
		writeInt(buf, u.Port)
	}
	if len(u.UriParams) > 0 {
		buf.WriteByte(';')
		transport.WriteParams(buf, ';', u.UriParams)
	}
	if len(u.Headers) > 0 {
		buf.WriteByte('?')
		transport.WriteParams(buf, '&', u.Headers)
	}
}

// isIPv6Literal is sipgo's test for a host to bracket: net.ParseIP
// takes it (no zone) and it is not IPv4 (nor IPv4-mapped).
func isIPv6Literal(h string) bool {
	if strings.IndexByte(h, ':') < 0 {
		return false // no IPv6 address without a colon
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Zone() == "" && !a.Is4() && !a.Is4In6()
}

// writeInt writes n in decimal without allocating.
func writeInt(buf *bytes.Buffer, n int) {
	var b [20]byte
	buf.Write(strconv.AppendInt(b[:0], int64(n), 10))
}
