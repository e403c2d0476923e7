package host

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNetRatesOverTenSecondsComeFromTheCounterDeltas(t *testing.T) {
	s := newStage(t)
	n := NewNet(s.root)
	s.load(early, nil)
	first, err := n.Sample(t0)
	if err != nil {
		t.Fatal(err)
	}
	if first.Valid || first.Interfaces != nil || first.RetransPerSec != 0 {
		t.Errorf("first sample: got %+v, want not valid and no rates", first)
	}
	s.load(later, nil)
	r, err := n.Sample(t10)
	if err != nil {
		t.Fatal(err)
	}
	// Over 10 s: eth0 drops +40 and errors +5; Tcp RetransSegs +100 of
	// OutSegs +20000. The veth that appeared is left out; so is the one
	// that went.
	want := NetReading{
		Valid:        true,
		Interval:     10 * time.Second,
		DropsPerSec:  4,
		ErrorsPerSec: 0.5,
		Interfaces: []Interface{
			{Name: "eth0", DropsPerSec: 4, ErrorsPerSec: 0.5},
			{Name: "ifb0"}, {Name: "ifb1"}, {Name: "lo"},
		},
		RetransPerSec: 10,
		RetransRatio:  0.005,
	}
	if !sameNet(r, want) {
		t.Errorf("got %+v, want %+v", r, want)
	}
}

func sameNet(a, b NetReading) bool {
	return a.Valid == b.Valid && a.Interval == b.Interval &&
		near(a.DropsPerSec, b.DropsPerSec) && near(a.ErrorsPerSec, b.ErrorsPerSec) &&
		near(a.RetransPerSec, b.RetransPerSec) && near(a.RetransRatio, b.RetransRatio) &&
		slices.EqualFunc(a.Interfaces, b.Interfaces, func(x, y Interface) bool {
			return x.Name == y.Name && near(x.DropsPerSec, y.DropsPerSec) && near(x.ErrorsPerSec, y.ErrorsPerSec)
		})
}

func TestTCPCountersGoingBackwardsStartANewBaseline(t *testing.T) {
	s := newStage(t)
	n := NewNet(s.root)
	s.load(later, nil)
	n.Sample(t0)
	s.load(early, nil)
	r, err := n.Sample(t10)
	if err != nil {
		t.Fatal(err)
	}
	if r.Valid || r.RetransPerSec != 0 || r.Interfaces != nil {
		t.Fatalf("after counters went backwards: got %+v, want not valid and no rates", r)
	}
	s.load(later, nil)
	if r, _ = n.Sample(t20); !r.Valid || !near(r.RetransPerSec, 10) || !near(r.DropsPerSec, 4) {
		t.Errorf("got %+v, want valid with 10 retransmits/s and 4 drops/s from the new baseline", r)
	}
}

func TestAnInterfaceWhoseCountersWentBackwardsIsLeftOutOnce(t *testing.T) {
	s := newStage(t)
	n := NewNet(s.root)
	s.load(early, nil)
	n.Sample(t0)
	// eth0 re-created: its counters restart from zero drops and errors.
	dev := strings.Replace(fixture(t, later, "proc/net/dev"),
		"  eth0: 625911830   46127    7  147    0     0          0         0  3799152   35880    0   13",
		"  eth0:    120411     912    0    1    0     0          0         0    88120     811    0    0", 1)
	s.load(later, map[string]string{"proc/net/dev": dev})
	r, err := n.Sample(t10)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Valid || r.DropsPerSec != 0 || slices.ContainsFunc(r.Interfaces, func(i Interface) bool { return i.Name == "eth0" }) {
		t.Errorf("got %+v, want valid, no drops, and eth0 left out", r)
	}
	if !near(r.RetransPerSec, 10) {
		t.Errorf("got %v retransmits/s, want 10: TCP is not reset by an interface", r.RetransPerSec)
	}
}

func TestNoSegmentsSentGiveARetransmitRatioOfZero(t *testing.T) {
	s := newStage(t)
	n := NewNet(s.root)
	s.load(early, nil)
	n.Sample(t0)
	r, err := n.Sample(t10)
	if err != nil || !r.Valid || r.RetransRatio != 0 {
		t.Errorf("got %+v, %v; want valid with ratio 0", r, err)
	}
}

func TestNetWithoutItsFilesIsUnavailable(t *testing.T) {
	for _, file := range []string{"proc/net/dev", "proc/net/snmp"} {
		t.Run(file, func(t *testing.T) {
			s := newStage(t)
			s.load(early, map[string]string{file: ""})
			_, err := NewNet(s.root).Sample(t0)
			wantUnavailable(t, err, file)
		})
	}
}

func TestMalformedNetFilesAreAnErrorNotUnavailable(t *testing.T) {
	snmp := fixture(t, early, "proc/net/snmp")
	tcpValues := "Tcp: 1 200 120000 -1 166446 40627 125679 31146 0 68250563 68226737 13797 0 155559 0"
	if !strings.Contains(snmp, tcpValues) {
		t.Fatalf("fixture changed: no line %q", tcpValues)
	}
	for _, tt := range []struct {
		name, file, content, names string
	}{
		{"a net/dev line with too few counters", "proc/net/dev", fixture(t, early, "proc/net/dev") + "  eth1: 1 2 3\n", "eth1: 1 2 3"},
		{"a net/dev counter that is not a number", "proc/net/dev", strings.Replace(fixture(t, early, "proc/net/dev"), "2  117", "2  x", 1), "line 6"},
		{"net/dev without its header", "proc/net/dev", "  eth0: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", "no header"},
		{"snmp without Tcp", "proc/net/snmp", strings.Replace(snmp, "Tcp:", "Xcp:", -1), "no Tcp"},
		{"snmp with a Tcp value missing", "proc/net/snmp", strings.Replace(snmp, tcpValues, strings.TrimSuffix(tcpValues, " 0"), 1), "15 Tcp names but 14 values"},
		{"snmp without RetransSegs", "proc/net/snmp", strings.Replace(snmp, "RetransSegs", "Retrans", 1), "no Tcp RetransSegs"},
		{"snmp with a counter that is not a number", "proc/net/snmp", strings.Replace(snmp, tcpValues, strings.Replace(tcpValues, "68226737", "-1", 1), 1), "Tcp OutSegs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStage(t)
			s.load(early, map[string]string{tt.file: tt.content})
			_, err := NewNet(s.root).Sample(t0)
			wantBroken(t, err, tt.file)
			wantBroken(t, err, tt.names)
		})
	}
}
