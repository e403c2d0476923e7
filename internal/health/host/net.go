package host

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Interface is one network interface's rates over the interval between two
// samples.
type Interface struct {
	Name string
	// DropsPerSec is packets dropped per second, received and sent.
	DropsPerSec float64
	// ErrorsPerSec is receive and transmit errors per second.
	ErrorsPerSec float64
}

// NetReading is the network's trouble over the interval between two
// samples: drops and errors from root/proc/net/dev, TCP retransmissions
// from root/proc/net/snmp, both of the sampling process's network namespace.
type NetReading struct {
	// Valid is false for the first sample, and for one that follows a reset
	// of the TCP counters or a clock that did not move forward: there is no
	// baseline, so the rates are zero.
	Valid bool
	// Interval is the wall time since the previous sample; 0 when not Valid.
	Interval time.Duration
	// DropsPerSec and ErrorsPerSec are summed over Interfaces.
	DropsPerSec, ErrorsPerSec float64
	// Interfaces are those in both samples, by name, loopback included. An
	// interface that appeared since the previous sample, or whose counters
	// went backwards (re-created), is left out until the next one: summing
	// over interfaces that come and go (containers' veths) would otherwise
	// make the totals jump.
	Interfaces []Interface
	// RetransPerSec is TCP segments retransmitted per second.
	RetransPerSec float64
	// RetransRatio is segments retransmitted over segments sent
	// (ΔRetransSegs / ΔOutSegs); 0 when none were sent.
	RetransRatio float64
}

// ifaceCounters are one line of /proc/net/dev, the fields the sampler uses.
type ifaceCounters struct {
	rxErrs, rxDrop, txErrs, txDrop uint64
}

func (c ifaceCounters) values() []uint64 { return []uint64{c.rxErrs, c.rxDrop, c.txErrs, c.txDrop} }

type netCounters struct {
	ifaces           map[string]ifaceCounters
	retrans, outSegs uint64
}

// Net samples root/proc/net/dev and root/proc/net/snmp. It is safe for
// concurrent use, but each Sample measures from the previous one whoever
// called it: give each consumer its own Net.
type Net struct {
	root Root

	mu     sync.Mutex
	prev   netCounters
	prevAt time.Time
}

// NewNet returns a sampler of root/proc/net.
func NewNet(root Root) *Net {
	return &Net{root: root}
}

// Sample reads the network counters at now.
func (n *Net) Sample(now time.Time) (NetReading, error) {
	n.mu.Lock()
	defer n.mu.Unlock()

	ifaces, err := readNetDev(n.root.path("proc", "net", "dev"))
	if err != nil {
		return NetReading{}, err
	}
	retrans, outSegs, err := readTCP(n.root.path("proc", "net", "snmp"))
	if err != nil {
		return NetReading{}, err
	}
	cur := netCounters{ifaces: ifaces, retrans: retrans, outSegs: outSegs}
	prev, prevAt := n.prev, n.prevAt
	n.prev, n.prevAt = cur, now

	var r NetReading
	dt, ok := interval(prevAt, now)
	if !ok || !forward([]uint64{prev.retrans, prev.outSegs}, []uint64{cur.retrans, cur.outSegs}) {
		return r, nil
	}
	r.Valid, r.Interval = true, dt
	for name, c := range cur.ifaces {
		p, ok := prev.ifaces[name]
		if !ok || !forward(p.values(), c.values()) {
			continue
		}
		i := Interface{
			Name:         name,
			DropsPerSec:  perSecond(c.rxDrop-p.rxDrop+c.txDrop-p.txDrop, dt),
			ErrorsPerSec: perSecond(c.rxErrs-p.rxErrs+c.txErrs-p.txErrs, dt),
		}
		r.Interfaces = append(r.Interfaces, i)
		r.DropsPerSec += i.DropsPerSec
		r.ErrorsPerSec += i.ErrorsPerSec
	}
	slices.SortFunc(r.Interfaces, func(a, b Interface) int { return strings.Compare(a.Name, b.Name) })
	r.RetransPerSec = perSecond(cur.retrans-prev.retrans, dt)
	if sent := cur.outSegs - prev.outSegs; sent > 0 {
		r.RetransRatio = float64(cur.retrans-prev.retrans) / float64(sent)
	}
	return r, nil
}

// readNetDev parses /proc/net/dev: two header lines, then "name: " and 16
// counters per interface. It does not use procfs's NetDev, which panics on
// a line with fewer counters.
func readNetDev(path string) (map[string]ifaceCounters, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, readErr(path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) < 2 || !strings.Contains(lines[1], "|bytes") {
		return nil, fmt.Errorf("parse %s: no header", path)
	}
	out := make(map[string]ifaceCounters, len(lines)-2)
	for n, line := range lines[2:] {
		name, rest, ok := strings.Cut(line, ":")
		f := strings.Fields(rest)
		name = strings.TrimSpace(name)
		if !ok || name == "" || len(f) < 16 {
			return nil, fmt.Errorf("parse %s: line %d: want an interface name, a colon and at least 16 counters, got %q", path, n+3, line)
		}
		var c ifaceCounters
		for _, v := range []struct {
			dst   *uint64
			field int
		}{{&c.rxErrs, 2}, {&c.rxDrop, 3}, {&c.txErrs, 10}, {&c.txDrop, 11}} {
			if *v.dst, err = strconv.ParseUint(f[v.field], 10, 64); err != nil {
				return nil, fmt.Errorf("parse %s: line %d: %w", path, n+3, err)
			}
		}
		out[name] = c
	}
	return out, nil
}

// readTCP returns RetransSegs and OutSegs from /proc/net/snmp, where each
// protocol has a line of names and then a line of values, both starting
// "Tcp:". It does not use procfs, whose parser reads only
// /proc/<pid>/net/snmp.
func readTCP(path string) (retrans, outSegs uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, readErr(path, err)
	}
	lines := strings.Split(string(b), "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Tcp:") })
	if i < 0 || i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "Tcp:") {
		return 0, 0, fmt.Errorf("parse %s: no Tcp names and values lines", path)
	}
	names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
	if len(names) != len(values) {
		return 0, 0, fmt.Errorf("parse %s: %d Tcp names but %d values", path, len(names)-1, len(values)-1)
	}
	field := func(name string) (uint64, error) {
		j := slices.Index(names, name)
		if j < 0 {
			return 0, fmt.Errorf("parse %s: no Tcp %s", path, name)
		}
		v, err := strconv.ParseUint(values[j], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: Tcp %s: %w", path, name, err)
		}
		return v, nil
	}
	if retrans, err = field("RetransSegs"); err != nil {
		return 0, 0, err
	}
	if outSegs, err = field("OutSegs"); err != nil {
		return 0, 0, err
	}
	return retrans, outSegs, nil
}
