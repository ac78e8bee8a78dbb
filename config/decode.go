package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with the configuration, placed where the
// operator can fix it.
type Problem struct {
	File string // the config file, when the value came from it
	Line int    // line in File (1-based), 0 when unknown
	Path string // YAML path, e.g. sip.trunks[0].cidrs[0]
	Env  string // the environment variable the value came from
	Msg  string
}

func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	}
	switch {
	case p.Env != "" && p.Path != "":
		fmt.Fprintf(&b, "%s (%s): ", p.Env, p.Path)
	case p.Env != "":
		b.WriteString(p.Env + ": ")
	case p.Path != "":
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error lists every problem found loading the configuration: the file's
// syntax and types, unknown keys, the environment and validation, each
// with its place.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return fmt.Sprintf("config: %d problem(s):\n  %s", len(e.Problems), strings.Join(lines, "\n  "))
}

// Unwrap returns the problems (errors.As(err, &config.Problem{})).
func (e *Error) Unwrap() []error {
	out := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p
	}
	return out
}

// decoder decodes a YAML node tree into Config strictly, collecting every
// problem instead of stopping at the first, and records the line of every
// key so that later (validation) problems can be placed too.
//
// It walks the mappings, sequences and maps itself, matching keys to
// fields as yaml.v3 does (inline structs, merge keys, nulls), and leaves
// each scalar to yaml.v3's own decoding, so values mean what they meant.
type decoder struct {
	file  string
	lines map[string]int // YAML path → line of its key or list element
	probs []Problem
	depth int
}

func (d *decoder) problem(n *yaml.Node, path, format string, a ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, a...)})
}

// decodeNode decodes the document root into v (a pointer to a struct).
func (d *decoder) decodeNode(doc *yaml.Node, v any) {
	n := doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == 0 { // no document: only comments
		return
	}
	d.value(n, reflect.ValueOf(v).Elem(), "")
}

const maxDepth = 64

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if d.depth > maxDepth {
		d.problem(n, path, "nested too deep (a recursive alias?)")
		return
	}
	d.depth++
	defer func() { d.depth-- }()
	if n.Kind == yaml.AliasNode {
		d.value(n.Alias, v, path)
		return
	}
	t := v.Type()
	custom := reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType)
	null := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	switch {
	case custom || t == durationType:
	case t.Kind() == reflect.Pointer:
		if null {
			v.Set(reflect.Zero(t))
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.value(n, v.Elem(), path)
		return
	case t.Kind() == reflect.Struct:
		switch {
		case null: // yaml.v3 leaves a section alone when it is empty
		case n.Kind == yaml.MappingNode:
			d.mapping(n, v, path)
		default:
			d.problem(n, path, "expected a mapping of keys, got %s", describeNode(n))
		}
		return
	case t.Kind() == reflect.Slice:
		switch {
		case null:
			v.Set(reflect.Zero(t))
		case n.Kind == yaml.SequenceNode:
			s := reflect.MakeSlice(t, 0, len(n.Content))
			for i, e := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				d.lines[p] = e.Line
				ev := reflect.New(t.Elem()).Elem()
				before := len(d.probs)
				d.value(e, ev, p)
				if len(d.probs) > before && d.probs[before].Path == p {
					continue // like yaml.v3: an element of the wrong kind is left out
				}
				s = reflect.Append(s, ev)
			}
			v.Set(s)
		default:
			d.problem(n, path, "expected a list, got %s", describeNode(n))
		}
		return
	case t.Kind() == reflect.Map:
		switch {
		case null:
			v.Set(reflect.Zero(t))
		case n.Kind == yaml.MappingNode:
			if v.IsNil() {
				v.Set(reflect.MakeMap(t))
			}
			d.eachKey(n, path, func(kn, vn *yaml.Node, name string) {
				k := reflect.New(t.Key()).Elem()
				if err := kn.Decode(k.Addr().Interface()); err != nil {
					d.problem(kn, path, "key %q: %s", kn.Value, scalarMsg(kn, t.Key()))
					return
				}
				p := path + "." + name
				d.lines[p] = kn.Line
				ev := reflect.New(t.Elem()).Elem()
				before := len(d.probs)
				d.value(vn, ev, p)
				if len(d.probs) == before {
					v.SetMapIndex(k, ev)
				}
			})
		default:
			d.problem(n, path, "expected a mapping, got %s", describeNode(n))
		}
		return
	}
	// A scalar: yaml.v3 decodes it (into a copy, so that a bad value
	// leaves the default in place).
	tmp := reflect.New(t)
	tmp.Elem().Set(v)
	if err := n.Decode(tmp.Interface()); err != nil {
		d.problem(n, path, "%s", scalarMsg(n, t))
		return
	}
	v.Set(tmp.Elem())
}

// eachKey calls fn for the keys of mapping n in the order yaml.v3 applies
// them: the mapping's own keys, then merged (<<) ones not set there.
// A key that appears twice is a problem.
func (d *decoder) eachKey(n *yaml.Node, path string, fn func(k, v *yaml.Node, name string)) {
	seen := map[string]*yaml.Node{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge") {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.problem(k, path, "a key must be a plain value, got %s", describeNode(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.problem(k, join(path, k.Value), "key already set on line %d", first.Line)
			continue
		}
		seen[k.Value] = k
		fn(k, v, k.Value)
	}
	for _, m := range merges {
		for m.Kind == yaml.AliasNode {
			m = m.Alias
		}
		var maps []*yaml.Node
		switch m.Kind {
		case yaml.MappingNode:
			maps = []*yaml.Node{m}
		case yaml.SequenceNode:
			maps = m.Content
		}
		for _, mm := range maps {
			for mm.Kind == yaml.AliasNode {
				mm = mm.Alias
			}
			if mm.Kind != yaml.MappingNode {
				d.problem(mm, path, "<< merges a mapping or a list of mappings, got %s", describeNode(mm))
				continue
			}
			for i := 0; i+1 < len(mm.Content); i += 2 {
				k := mm.Content[i]
				if _, set := seen[k.Value]; set || k.Kind != yaml.ScalarNode {
					continue
				}
				seen[k.Value] = k
				fn(k, mm.Content[i+1], k.Value)
			}
		}
		if len(maps) == 0 {
			d.problem(m, path, "<< merges a mapping or a list of mappings, got %s", describeNode(m))
		}
	}
}

// mapping decodes a mapping into a struct: every key must be a field
// (strict, like KnownFields), inline structs included.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	d.eachKey(n, path, func(kn, vn *yaml.Node, name string) {
		p := join(path, name)
		idx, ok := structKey(v.Type(), name)
		if !ok {
			d.problem(kn, p, "unknown key %q%s", name, knownKeys(v.Type(), name))
			return
		}
		d.lines[p] = kn.Line
		d.value(vn, v.FieldByIndex(idx), p)
	})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// structKey finds the field a YAML key sets, through inline structs.
func structKey(t reflect.Type, key string) ([]int, bool) {
	for i := 0; i < t.NumField(); i++ {
		name, inline, ok := yamlName(t.Field(i))
		if !ok {
			continue
		}
		if inline {
			if idx, ok := structKey(t.Field(i).Type, key); ok {
				return append([]int{i}, idx...), true
			}
			continue
		}
		if name == key {
			return []int{i}, true
		}
	}
	return nil, false
}

// knownKeys suggests the key meant (a typo within two edits) or lists a
// small section's keys, for an unknown-key message.
func knownKeys(t reflect.Type, key string) string {
	var names []string
	var add func(reflect.Type)
	add = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			name, inline, ok := yamlName(t.Field(i))
			switch {
			case !ok:
			case inline:
				add(t.Field(i).Type)
			default:
				names = append(names, name)
			}
		}
	}
	add(t)
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(key, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return " (did you mean " + best + "?)"
	}
	if len(names) == 0 || len(names) > 12 {
		return ""
	}
	return " (known: " + strings.Join(names, ", ") + ")"
}

// editDistance is the Levenshtein distance of two short keys.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describeNode(n *yaml.Node) string {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "a YAML node"
}

// scalarMsg says why node n is not a value of type t, in the words the
// environment overrides use.
func scalarMsg(n *yaml.Node, t reflect.Type) string {
	var want string
	switch {
	case t == durationType:
		want = "a duration (e.g. 30s, 1m)"
	case t.Kind() == reflect.Bool:
		want = "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		want = "an integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		want = "a number"
	case t.Kind() == reflect.String:
		want = "a string"
	default:
		want = "a " + t.String()
	}
	if n.Kind == yaml.ScalarNode {
		return fmt.Sprintf("%q is not %s", n.Value, want)
	}
	return fmt.Sprintf("expected %s, got %s", want, describeNode(n))
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem places a parse error of the file.
func syntaxProblem(file string, err error) Problem {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{File: file, Line: line, Msg: m[2]}
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msg = strings.Join(te.Errors, "; ")
	}
	return Problem{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}
