package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// field is one decoded parameter.
type field struct{ k, v string }

// form is a webhook's parameters in the order received: a cheaper
// url.Values for the hot path (one string for the whole body, values
// unescaped only when they need it, no map).
type form struct {
	fields []field
	sorted []field // scratch for writeSigned
}

var formPool = sync.Pool{New: func() any { return &form{fields: make([]field, 0, 32)} }}

func getForm() *form { f := formPool.Get().(*form); f.fields = f.fields[:0]; return f }

func putForm(f *form) {
	if cap(f.fields) <= 1024 && cap(f.sorted) <= 1024 {
		clear(f.fields[:cap(f.fields)])
		clear(f.sorted[:cap(f.sorted)])
		formPool.Put(f)
	}
}

// Get returns the first value of name, or "".
func (f *form) Get(name string) string {
	for i := range f.fields {
		if f.fields[i].k == name {
			return f.fields[i].v
		}
	}
	return ""
}

func (f *form) add(k, v string) { f.fields = append(f.fields, field{k, v}) }

var errSemicolon = errors.New("invalid semicolon separator in query")

// parseForm decodes an application/x-www-form-urlencoded body the way
// url.ParseQuery does (including its refusal of ';' and bad escapes).
func (f *form) parseForm(body string) error {
	var first error
	for body != "" {
		var kv string
		kv, body, _ = strings.Cut(body, "&")
		if kv == "" {
			continue
		}
		if strings.IndexByte(kv, ';') >= 0 {
			if first == nil {
				first = errSemicolon
			}
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err := unescapeForm(k)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		v, err = unescapeForm(v)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		f.add(k, v)
	}
	return first
}

func unescapeForm(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// appendSigned appends the parameters as Twilio signs them: sorted by
// name, each name's distinct values sorted.
func (f *form) appendSigned(dst []byte) []byte {
	f.sorted = append(f.sorted[:0], f.fields...)
	slices.SortFunc(f.sorted, func(a, b field) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	for i, x := range f.sorted {
		if i > 0 && f.sorted[i-1] == x {
			continue
		}
		dst = append(dst, x.k...)
		dst = append(dst, x.v...)
	}
	return dst
}

// parse reads a webhook's parameters into f: a form body, or
// (Twilio bodySHA256 requests, Telnyx JSON TeXML) a flat JSON object whose
// string, number and boolean members become parameters.
func (f *form) parse(contentType string, body []byte) error {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	switch ct {
	case "", "application/x-www-form-urlencoded":
		if err := f.parseForm(string(body)); err != nil {
			return fmt.Errorf("malformed form body: %v", err)
		}
		return nil
	case "application/json":
		v, err := parseJSONParams(body)
		if err != nil {
			return err
		}
		for k, vs := range v {
			for _, x := range vs {
				f.add(k, x)
			}
		}
		return nil
	default:
		return fmt.Errorf("unsupported Content-Type %q (want application/x-www-form-urlencoded or application/json)", contentType)
	}
}
