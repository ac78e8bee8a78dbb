package sip

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// parseDatagram is sipgo's ParseSIP for one UDP datagram with fewer
// allocations: sipgo copies the start line and each header line into a
// string of its own before parsing it (and a header it does not parse
// into two); here the start line and header section are copied once and
// every header is parsed, by sipgo's own header parsers, from a
// substring of that copy. The message is the one sipgo's parser builds
// (FuzzParseDatagram); whatever this does not take whole (folded lines,
// a line without CRLF, a header or start line that does not parse, a
// short body) goes to sipgo's parser, so errors and odd messages are
// always sipgo's.
func (s *Server) parseDatagram(data []byte) (sip.Message, error) {
	p := s.tp.Parser()
	if m := parseQuick(data, p.MaxMessageLength, sip.DefaultHeadersParser()); m != nil {
		return m, nil
	}
	return p.ParseSIP(data)
}

// parseQuick is sipgo's Parser.Parse(data, false) with the parsers hps
// (the transport's parser is sipgo's default) for a datagram it takes
// whole; nil: let sipgo parse it.
func parseQuick(data []byte, maxLen int, hps sip.HeadersParser) sip.Message {
	if len(data) > maxLen {
		return nil
	}
	// the header section: lines ending in CRLF up to the empty line;
	// ends[k] is where line k's CRLF is
	var ends [maxQuickLines]int
	n, end := 0, 0
	for {
		i := bytes.IndexByte(data[end:], '\r')
		if i < 0 || end+i+1 >= len(data) || data[end+i+1] != '\n' {
			return nil // no CRLF, or a CR alone: sipgo's error
		}
		if i == 0 {
			if n == 0 {
				return nil // an empty start line
			}
			end += 2
			break
		}
		if n == len(ends) {
			return nil // a message of many lines: sipgo's
		}
		ends[n] = end + i
		n++
		end += i + 2
		if n > 1 && end < len(data) && (data[end] == ' ' || data[end] == '\t') {
			return nil // a folded header line
		}
	}
	text := string(data[:end]) // the one copy the headers point into
	msg := parseStart(text[:ends[0]])
	if msg == nil {
		return nil
	}
	var cl *sip.ContentLengthHeader
	var lower [32]byte
	dflt := reflect.ValueOf(hps).UnsafePointer() == defaultParsers
	for k := 1; k < n; k++ {
		line := text[ends[k-1]+2 : ends[k]]
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			return nil
		}
		name := strings.TrimSpace(line[:colon])
		value := strings.TrimSpace(line[colon+1:])
		key := headerLower(lower[:0], name)
		var parse sip.HeaderParser
		var ln []byte
		if dflt {
			qp, ok := quickParsers[string(key)] // one lookup: the parser and its name
			if !ok {
				msg.AppendHeader(sip.NewHeader(name, value))
				continue
			}
			parse, ln = qp.parse, qp.name
		} else {
			p, ok := hps[string(key)]
			if !ok {
				msg.AppendHeader(sip.NewHeader(name, value))
				continue
			}
			parse, ln = p, []byte(string(key))
		}
		for {
			h, err := parse(ln, value)
			k, comma := 0, false
			if err != nil {
				if k, comma = commaAt(err); !comma {
					return nil
				}
			}
			if c, ok := h.(*sip.ContentLengthHeader); ok {
				cl = c
			}
			msg.AppendHeader(h)
			if !comma {
				break
			}
			value = value[k+1:] // the next value on the line
		}
	}
	rest := data[end:]
	size := len(rest)
	if cl != nil {
		size = int(*cl)
	}
	if size == 0 {
		return msg
	}
	if size > maxLen-end || size > len(rest) {
		return nil
	}
	body := make([]byte, size)
	copy(body, rest)
	msg.SetBody(body)
	return msg
}

// quickParsers are sipgo's default header parsers by lower-case name,
// each with the name as the bytes parseQuick hands to it (a shared copy,
// which the parser only reads: a slice of parseQuick's lower-case buffer
// passed to a parser func made the buffer escape, one allocation per
// datagram).
var quickParsers = func() map[string]quickParser {
	m := map[string]quickParser{}
	for k, p := range sip.DefaultHeadersParser() {
		m[k] = quickParser{parse: p, name: []byte(k)}
	}
	return m
}()

type quickParser struct {
	parse sip.HeaderParser
	name  []byte
}

// defaultParsers is sipgo's default parser map (DefaultHeadersParser
// returns the same map each time): parseQuick given it looks a header up
// once, in quickParsers.
var defaultParsers = reflect.ValueOf(sip.DefaultHeadersParser()).UnsafePointer()

// maxQuickLines is the most lines (start line and headers) parseQuick
// takes; longer messages go to sipgo's parser.
const maxQuickLines = 64

// parseStart is sipgo's start line (parseLine): a request line whose
// version starts with "SIP" and has no space, else a status line.
func parseStart(l string) sip.Message {
	a := strings.IndexByte(l, ' ')
	if a < 0 {
		return nil
	}
	b := strings.IndexByte(l[a+1:], ' ')
	if b < 0 {
		return nil
	}
	p0, p1, p2 := l[:a], l[a+1:a+1+b], l[a+2+b:]
	if len(p2) >= 3 && strings.IndexByte(p2, ' ') < 0 && sip.UriIsSIP(p2[:3]) {
		// the Request-URI parsed in place: a sip.Uri parsed on its own
		// went to the heap (one allocation more per request)
		req := sip.NewRequest(sip.RequestMethod(strings.ToUpper(p0)), sip.Uri{})
		if sip.ParseUri(p1, &req.Recipient) != nil || req.Recipient.Wildcard {
			return nil
		}
		req.SipVersion = p2
		return req
	}
	if len(p0) >= 3 && sip.UriIsSIP(p0[:3]) {
		code, err := strconv.ParseUint(p1, 10, 16)
		if err != nil {
			return nil
		}
		res := sip.NewResponse(int(code), p2)
		res.SipVersion = p0
		return res
	}
	return nil
}

// headerLower appends sipgo's lower-case form of a header name (its
// headerToLower): ASCII letters lowered, and the compact forms t, f, v,
// i, l, c and m spelled out.
func headerLower(dst []byte, name string) []byte {
	if len(name) == 1 {
		c := name[0]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		switch c {
		case 't':
			return append(dst, "to"...)
		case 'f':
			return append(dst, "from"...)
		case 'v':
			return append(dst, "via"...)
		case 'i':
			return append(dst, "call-id"...)
		case 'l':
			return append(dst, "content-length"...)
		case 'c':
			return append(dst, "content-type"...)
		case 'm':
			return append(dst, "contact"...)
		}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// sipgoPkg is the package of sipgo's comma error.
var sipgoPkg = reflect.TypeOf(sip.Uri{}).PkgPath()

// commaAt reads sipgo's errComaDetected (unexported: an int, the offset
// of the comma after the header's first value): its header parsers
// return it with that value parsed when a line holds several.
func commaAt(err error) (int, bool) {
	t := reflect.TypeOf(err)
	if t.Kind() != reflect.Int || t.Name() != "errComaDetected" || t.PkgPath() != sipgoPkg {
		return 0, false
	}
	return int(reflect.ValueOf(err).Int()), true
}
