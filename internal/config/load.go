package config

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// source remembers where values came from so errors can point at them.
type source struct {
	file  string
	lines map[string]int    // YAML path -> line of its value
	flags map[string]string // YAML path -> flag that set it
}

// FieldError is one problem with one setting.
type FieldError struct {
	File  string // config file, or "" for defaults and flags
	Line  int    // line of the value, 0 when unknown
	Flag  string // the flag that set the value, if any
	Path  string // YAML path, e.g. "etcd.election-timeout"
	Value string // the offending value as written, if any
	Msg   string // what is wrong and what is expected
}

func (e FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.Flag != "":
		fmt.Fprintf(&b, "flag --%s: ", e.Flag)
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	}
	b.WriteString(e.Path)
	if e.Value != "" {
		fmt.Fprintf(&b, " %q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one config, in file order.
type Errors []FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads and strictly decodes a config file over the defaults. It does
// not validate: apply flag overrides first, then call Validate.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes YAML over the defaults. Unknown keys and wrong types are
// errors; all of them are reported at once.
func Parse(file string, data []byte) (*Config, error) {
	cfg := Default()
	cfg.src = source{file: file, lines: map[string]int{}}
	if len(bytes.TrimSpace(data)) == 0 {
		return cfg, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml's syntax errors carry "yaml: line N: ..."; keep them whole.
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	d := decoder{src: &cfg.src}
	d.decode(&doc, reflect.ValueOf(cfg).Elem(), "")
	if len(d.errs) > 0 {
		sortErrors(d.errs)
		return nil, d.errs
	}
	return cfg, nil
}

// decoder walks the YAML tree beside the Go struct so that each error can
// name its YAML path and line, which yaml.v3's KnownFields cannot.
type decoder struct {
	src  *source
	errs Errors
}

var unmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

func (d *decoder) fail(n *yaml.Node, path, value, msg string) {
	d.errs = append(d.errs, FieldError{File: d.src.file, Line: n.Line, Path: path, Value: value, Msg: msg})
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) > 0 {
			d.decode(n.Content[0], v, path)
		}
		return
	}
	// An empty value ("etcd:" alone) keeps the defaults.
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind == yaml.AliasNode {
		d.fail(n, orRoot(path), "", "YAML aliases are not supported; write the value out")
		return
	}
	if v.Kind() == reflect.Struct && !reflect.PointerTo(v.Type()).Implements(unmarshaler) {
		d.decodeStruct(n, v, path)
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		value := ""
		if n.Kind == yaml.ScalarNode {
			value = n.Value
		}
		d.fail(n, path, value, leafMessage(v.Type(), err))
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, orRoot(path), "", "expected a mapping of keys to values")
		return
	}
	fields := map[string]int{}
	var names []string
	for i := 0; i < v.NumField(); i++ {
		tag := v.Type().Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = i
		names = append(names, tag)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		p := key.Value
		if path != "" {
			p = path + "." + key.Value
		}
		idx, ok := fields[key.Value]
		if !ok {
			d.fail(key, p, "", "unknown key; expected one of: "+strings.Join(names, ", "))
			continue
		}
		d.src.lines[p] = val.Line
		d.decode(val, v.Field(idx), p)
	}
}

// leafMessage says what a value should look like, in the operator's words
// rather than Go's type names.
func leafMessage(t reflect.Type, err error) string {
	if reflect.PointerTo(t).Implements(unmarshaler) {
		return err.Error()
	}
	switch t.Kind() {
	case reflect.String:
		return "expected a string"
	case reflect.Bool:
		return "expected true or false"
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Int32:
		return "expected a whole number"
	case reflect.Slice:
		return "expected a list"
	}
	return err.Error()
}

func orRoot(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
}
