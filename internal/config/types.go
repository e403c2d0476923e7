package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as a Go duration string
// ("100ms", "1s"), so the unit is always explicit.
type Duration time.Duration

// UnmarshalYAML accepts only strings with a unit: a bare 100 is ambiguous
// (etcd's own flags take milliseconds, its YAML too), so it is refused.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return fmt.Errorf("expected a duration with a unit, like \"100ms\" or \"1s\"")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("expected a duration with a unit, like \"100ms\" or \"1s\"")
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back in its string form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// ByteSize is a size in bytes, written in YAML as an integer or with a unit
// ("8GiB", "1.5MiB", "2GB").
type ByteSize int64

// UnmarshalYAML accepts a non-negative integer or a humanized size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size like 8GiB or a number of bytes")
	}
	v, err := humanize.ParseBytes(n.Value)
	if err != nil || v > 1<<62 {
		return fmt.Errorf("expected a size like 8GiB or a number of bytes")
	}
	*b = ByteSize(v)
	return nil
}

// MarshalYAML writes the size with a binary unit when it divides evenly.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

func (b ByteSize) String() string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := int64(b), 0
	for v != 0 && v%1024 == 0 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprint(int64(b))
	}
	return fmt.Sprintf("%d%s", v, units[i])
}

// URLList is a list of URLs; YAML may give one string or a list, and a
// string may hold several URLs separated by commas as etcd's flags do.
type URLList []string

// UnmarshalYAML accepts "a,b", "a" or [a, b].
func (l *URLList) UnmarshalYAML(n *yaml.Node) error {
	out, err := splitList(n, "URL")
	*l = out
	return err
}

// List is a list of names written as one string, a comma-separated
// string, or a YAML list.
type List []string

// UnmarshalYAML accepts "a,b", "a" or [a, b].
func (l *List) UnmarshalYAML(n *yaml.Node) error {
	out, err := splitList(n, "name")
	*l = out
	return err
}

func splitList(n *yaml.Node, what string) ([]string, error) {
	var out []string
	switch n.Kind {
	case yaml.ScalarNode:
		for _, s := range strings.Split(n.Value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("expected a list of %ss", what)
			}
			out = append(out, strings.TrimSpace(c.Value))
		}
		return out, nil
	}
	return nil, fmt.Errorf("expected a %s or a list of %ss", what, what)
}

// Command is an argv list, run without a shell so paths with spaces and
// arguments need no quoting.
type Command []string

// UnmarshalYAML accepts only a list: a single string would hide whether
// "a b" is one argument or two.
func (c *Command) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("expected a command as a list, like [/usr/local/bin/ship-backup, --to, s3]")
	}
	var out []string
	for _, e := range n.Content {
		if e.Kind != yaml.ScalarNode {
			return fmt.Errorf("expected a command as a list of strings")
		}
		out = append(out, e.Value)
	}
	*c = out
	return nil
}
