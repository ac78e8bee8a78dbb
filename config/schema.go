package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The settings are described once, by tags on the config structs (here and
// in the packages whose Config sections are embedded):
//
//	yaml:"key"            the key in the file (",inline" merges a struct)
//	env:"CALLGATE_..."    the environment variable overriding it
//	help:"..."            one line for `serve --help`
//	default:"..."         what `serve --help` shows as the default when the
//	                      value in Default() does not say it: a component's
//	                      own default for a zero value, or "(region)" for a
//	                      value inherited from another key
//
// Settings(), the environment overrides and the YAML decoder are generated
// from them by reflection; nothing else lists the keys.

// field is one YAML key of Config (a leaf, a list or a section).
type field struct {
	path  string // YAML path: sip.probe.interval, sip.trunks[].cidrs
	index []int  // reflect index from Config (through inline structs); nil under a list
	typ   reflect.Type
	tag   reflect.StructTag
}

var durationType = reflect.TypeFor[time.Duration]()

// yamlName returns the key of a struct field in YAML, whether it is
// inlined, and false for fields YAML ignores. It follows yaml.v3: no tag
// means the lower-cased field name.
func yamlName(sf reflect.StructField) (name string, inline, ok bool) {
	if !sf.IsExported() {
		return "", false, false
	}
	tag := sf.Tag.Get("yaml")
	if tag == "-" {
		return "", false, false
	}
	name, opts, _ := strings.Cut(tag, ",")
	for _, o := range strings.Split(opts, ",") {
		if o == "inline" {
			return "", true, true
		}
	}
	if name == "" {
		name = strings.ToLower(sf.Name)
	}
	return name, false, true
}

// isLeaf says whether a type is one setting rather than a section.
func isLeaf(t reflect.Type) bool {
	return t == durationType || t.Kind() != reflect.Struct
}

// fields lists every key under t in declaration order: sections are not
// listed, their keys are; a list of structs is listed and so are its
// elements' keys (path[].key).
func fields(t reflect.Type, prefix string, index []int) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, inline, ok := yamlName(sf)
		if !ok {
			continue
		}
		var idx []int
		if index != nil {
			idx = append(append([]int(nil), index...), i)
		}
		if inline {
			out = append(out, fields(sf.Type, prefix, idx)...)
			continue
		}
		path := prefix + name
		switch {
		case !isLeaf(sf.Type):
			out = append(out, fields(sf.Type, path+".", idx)...)
		case sf.Type.Kind() == reflect.Slice && !isLeaf(sf.Type.Elem()):
			out = append(out, field{path: path, index: idx, typ: sf.Type, tag: sf.Tag})
			out = append(out, fields(sf.Type.Elem(), path+"[].", nil)...)
		default:
			out = append(out, field{path: path, index: idx, typ: sf.Type, tag: sf.Tag})
		}
	}
	return out
}

func configFields() []field { return fields(reflect.TypeFor[Config](), "", []int{}) }

// Setting documents one key for `serve --help`.
type Setting struct {
	Key, Env, Default, Help string
}

// Settings lists every setting with its environment variable, default and
// help, in the order of the config structs. Keys under a list of sections
// are written key[].name.
func Settings() []Setting {
	d := reflect.ValueOf(Default())
	var s []Setting
	for _, f := range configFields() {
		def, ok := f.tag.Lookup("default")
		switch {
		case ok:
		case f.index != nil:
			def = formatValue(d.FieldByIndex(f.index))
		default:
			def = "-" // a key of each list element: no default
		}
		s = append(s, Setting{Key: f.path, Env: f.tag.Get("env"), Default: def, Help: f.tag.Get("help")})
	}
	return s
}

// formatValue writes a default the way it is written in the file:
// durations as "30s", lists as [a, b], empty strings as "".
func formatValue(v reflect.Value) string {
	if v.Type() == durationType {
		return formatDuration(time.Duration(v.Int()))
	}
	switch v.Kind() {
	case reflect.String:
		if v.String() == "" {
			return ""
		}
		return v.String()
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = formatValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Map:
		keys := make([]string, 0, v.Len())
		vals := map[string]string{}
		for _, k := range v.MapKeys() {
			ks := fmt.Sprint(k.Interface())
			keys = append(keys, ks)
			vals[ks] = formatValue(v.MapIndex(k))
		}
		sort.Strings(keys)
		for i, k := range keys {
			keys[i] = k + ": " + vals[k]
		}
		return "{" + strings.Join(keys, ", ") + "}"
	case reflect.Struct: // an element of a list of sections: its name, or its set keys
		if f, ok := v.Type().FieldByName("Name"); ok && f.Type.Kind() == reflect.String {
			if n, _, _ := yamlName(f); n == "name" {
				return v.FieldByIndex(f.Index).String()
			}
		}
		var parts []string
		for i := 0; i < v.NumField(); i++ {
			name, _, ok := yamlName(v.Type().Field(i))
			if !ok || v.Field(i).IsZero() {
				continue
			}
			parts = append(parts, name+": "+formatValue(v.Field(i)))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v.Interface())
}

// formatDuration writes d as a Go duration without zero tails: 1m, not 1m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// applyEnv sets every key that has an env tag and a non-empty variable.
func (c *Config) applyEnv(env func(string) string) []Problem {
	var probs []Problem
	cv := reflect.ValueOf(c).Elem()
	for _, f := range configFields() {
		name := f.tag.Get("env")
		if name == "" || f.index == nil {
			continue
		}
		v := env(name)
		if v == "" {
			continue
		}
		if msg := setString(cv.FieldByIndex(f.index), v); msg != "" {
			probs = append(probs, Problem{Path: f.path, Env: name, Msg: msg})
		}
	}
	return probs
}

// setString parses s into dst (a leaf of a kind an env tag may be on) and
// returns what is wrong with s, or "".
func setString(dst reflect.Value, s string) string {
	if dst.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Sprintf("%q is not a duration (e.g. 30s, 1m)", s)
		}
		dst.SetInt(int64(d))
		return ""
	}
	switch dst.Kind() {
	case reflect.String:
		dst.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Sprintf("%q is not true or false", s)
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, dst.Type().Bits())
		if err != nil {
			return fmt.Sprintf("%q is not an integer", s)
		}
		dst.SetInt(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, dst.Type().Bits())
		if err != nil {
			return fmt.Sprintf("%q is not a number", s)
		}
		dst.SetFloat(n)
	default:
		// TestEnvTagsOnScalars keeps env tags off lists and maps.
		panic(fmt.Sprintf("config: env tag on a %s", dst.Type()))
	}
	return ""
}
