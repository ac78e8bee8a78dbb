package calls

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// Encode returns e as JSON: the bytes json.Marshal(e) returns (same
// fields, order, escaping and numbers), and its error when it has one.
// It writes the fixed fields itself, without reflection, and leaves
// Media, Transfer and Headers (when set) and anything unusual (a time
// outside years 0-9999, a NaN or infinite setup time) to encoding/json.
// FuzzEncode holds it to json.Marshal.
func Encode(e *Event) ([]byte, error) {
	var buf [512]byte // most events fit: one allocation of their size
	b, ok := appendEvent(buf[:0], e)
	if !ok {
		ev := *e // a copy, so that e itself does not escape to the heap
		return json.Marshal(ev)
	}
	return bytes.Clone(b), nil
}

// AppendEncoded appends e's JSON (Encode's bytes) to dst and returns the
// extended buffer, so that a caller with a buffer of its own encodes an
// event without allocating. On an error it returns dst unchanged (its
// spare capacity may have been written).
func AppendEncoded(dst []byte, e *Event) ([]byte, error) {
	b, ok := appendEvent(dst, e)
	if ok {
		return b, nil
	}
	ev := *e // a copy, so that e itself does not escape to the heap
	m, err := json.Marshal(ev)
	if err != nil {
		return dst, err
	}
	return append(dst, m...), nil
}

// appendEvent appends e's JSON to b; false when encoding/json must do it
// (its bytes or its error).
func appendEvent(b []byte, e *Event) ([]byte, bool) {
	b = append(b, `{"kind":`...)
	b = appendString(b, e.Kind)
	b = append(b, `,"call_id":`...)
	b = appendString(b, e.CallID)
	b = append(b, `,"time":"`...)
	n := len(b)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	if !strictRFC3339(b[n:]) {
		return b, false
	}
	b = append(b, `","number":`...)
	b = appendString(b, e.Number)
	b = appendStringField(b, `,"workspace":`, e.Workspace)
	b = appendStringField(b, `,"agent":`, e.Agent)
	b = appendStringField(b, `,"region":`, e.Region)
	b = appendStringField(b, `,"carrier":`, e.Carrier)
	b = appendStringField(b, `,"origin":`, e.Origin)
	b = appendStringField(b, `,"source":`, e.Source)
	if e.SetupMillis != 0 {
		if math.IsNaN(e.SetupMillis) || math.IsInf(e.SetupMillis, 0) {
			return b, false
		}
		b = append(b, `,"setup_ms":`...)
		b = appendFloat(b, e.SetupMillis)
	}
	b = appendIntField(b, `,"status":`, int64(e.Status))
	b = appendStringField(b, `,"reason":`, e.Reason)
	b = appendIntField(b, `,"duration_ns":`, int64(e.Duration))
	if e.Media != nil {
		m, err := json.Marshal(e.Media)
		if err != nil {
			return b, false
		}
		b = append(append(b, `,"media":`...), m...)
	}
	b = appendStringField(b, `,"direction":`, e.Direction)
	b = appendStringField(b, `,"from":`, e.From)
	b = appendStringField(b, `,"to":`, e.To)
	b = appendStringField(b, `,"forwarded_from":`, e.ForwardedFrom)
	b = appendStringField(b, `,"endpoint":`, e.Endpoint)
	b = appendStringField(b, `,"hook_outcome":`, e.HookOutcome)
	b = appendIntField(b, `,"fallback_step":`, int64(e.FallbackStep))
	b = appendStringField(b, `,"digits":`, e.Digits)
	b = appendStringField(b, `,"dtmf_from":`, e.DTMFFrom)
	b = appendStringField(b, `,"dtmf_via":`, e.DTMFVia)
	if e.Transfer != nil {
		t, err := json.Marshal(e.Transfer)
		if err != nil {
			return b, false
		}
		b = append(append(b, `,"transfer":`...), t...)
	}
	if len(e.Headers) > 0 {
		h, err := json.Marshal(e.Headers)
		if err != nil {
			return b, false
		}
		b = append(append(b, `,"headers":`...), h...)
	}
	b = appendStringField(b, `,"carrier_call_id":`, e.CarrierCallID)
	return append(b, '}'), true
}

func appendStringField(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, key...), s)
}

func appendIntField(b []byte, key string, n int64) []byte {
	if n == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), n, 10)
}

// appendString appends s quoted. Printable ASCII but for the characters
// encoding/json escapes (", \ and its HTML escapes <, >, &) is copied;
// any other string is left to encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plain[s[i]] {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plain are the bytes encoding/json copies as they are into a string.
var plain = func() (t [256]bool) {
	for c := 0x20; c <= 0x7e; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// appendFloat appends f as encoding/json writes a float64 (ES6 number
// to string: 'e' below 1e-6 and from 1e21, an exponent without padding).
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// strictRFC3339 reports whether t (a time formatted RFC3339Nano) is one
// time.Time.MarshalJSON accepts: a four-digit year and a zone offset
// under 24 hours.
func strictRFC3339(t []byte) bool {
	if len(t) < len("2006-01-02T15:04:05Z") || t[4] != '-' {
		return false
	}
	if t[len(t)-1] == 'Z' {
		return true
	}
	c := t[len(t)-len("Z07:00")]
	h := t[len(t)-len("07:00"):]
	return (c == '+' || c == '-') && 10*(h[0]-'0')+(h[1]-'0') < 24
}
