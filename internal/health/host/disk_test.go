package host

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sampleDisk samples dev in the fixture root first at t0 and then in second at
// t10, and returns the second reading.
func sampleDisk(t *testing.T, dev string, first, second func(*stage)) DiskReading {
	t.Helper()
	s := newStage(t)
	d := NewDisk(s.root, dev)
	first(s)
	r, err := d.Sample(t0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Valid || r.Utilization != 0 || r.WritesPerSec != 0 {
		t.Errorf("first sample: got %+v, want not valid and zero rates", r)
	}
	second(s)
	r, err = d.Sample(t10)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDiskRatesOverTenSecondsComeFromTheCounterDeltas(t *testing.T) {
	r := sampleDisk(t, "vda", func(s *stage) { s.load(early, nil) }, func(s *stage) { s.load(later, nil) })
	// Over 10 s: io ticks +4000 ms, weighted +25000 ms, writes +2000 taking
	// +3000 ms, flushes +500 taking +1000 ms, 3 in flight at the end.
	want := DiskReading{
		Valid:         true,
		Device:        "vda",
		Interval:      10 * time.Second,
		Utilization:   0.4,
		QueueDepth:    2.5,
		WritesPerSec:  200,
		WriteLatency:  1500 * time.Microsecond,
		HasFlush:      true,
		FlushesPerSec: 50,
		FlushLatency:  2 * time.Millisecond,
		InFlight:      3,
	}
	if !sameDisk(r, want) {
		t.Errorf("got %+v, want %+v", r, want)
	}
}

func sameDisk(a, b DiskReading) bool {
	return a.Valid == b.Valid && a.Device == b.Device && a.Interval == b.Interval &&
		near(a.Utilization, b.Utilization) && near(a.QueueDepth, b.QueueDepth) &&
		near(a.WritesPerSec, b.WritesPerSec) && a.WriteLatency == b.WriteLatency &&
		a.HasFlush == b.HasFlush && near(a.FlushesPerSec, b.FlushesPerSec) &&
		a.FlushLatency == b.FlushLatency && a.InFlight == b.InFlight
}

func TestAnIdleDiskHasZeroLatencyNotADivisionByZero(t *testing.T) {
	r := sampleDisk(t, "vda", func(s *stage) { s.load(early, nil) }, func(s *stage) {})
	want := DiskReading{Valid: true, Device: "vda", Interval: 10 * time.Second, HasFlush: true}
	if !sameDisk(r, want) {
		t.Errorf("got %+v, want %+v", r, want)
	}
}

// oldKernel cuts every diskstats line to the 14 fields of Linux before 4.18:
// no discard and no flush fields.
func oldKernel(t *testing.T, root string) map[string]string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(fixture(t, root, "proc/diskstats")), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l)[:14], " "))
	}
	return map[string]string{"proc/diskstats": strings.Join(lines, "\n") + "\n"}
}

func TestADiskOnAKernelWithoutFlushFieldsHasNoFlushFigures(t *testing.T) {
	r := sampleDisk(t, "vda",
		func(s *stage) { s.load(early, oldKernel(t, early)) },
		func(s *stage) { s.load(later, oldKernel(t, later)) })
	want := DiskReading{
		Valid: true, Device: "vda", Interval: 10 * time.Second,
		Utilization: 0.4, QueueDepth: 2.5, WritesPerSec: 200, WriteLatency: 1500 * time.Microsecond,
		InFlight: 3,
	}
	if !sameDisk(r, want) {
		t.Errorf("got %+v, want %+v", r, want)
	}
}

func TestDiskCountersGoingBackwardsStartANewBaseline(t *testing.T) {
	s := newStage(t)
	d := NewDisk(s.root, "vda")
	s.load(later, nil)
	d.Sample(t0)
	s.load(early, nil) // the device was replaced: its counters restart lower
	r, err := d.Sample(t10)
	if err != nil {
		t.Fatal(err)
	}
	if r.Valid || r.Utilization != 0 || r.WritesPerSec != 0 {
		t.Fatalf("after counters went backwards: got %+v, want not valid and zero rates", r)
	}
	s.load(later, nil)
	if r, _ = d.Sample(t20); !r.Valid || !near(r.WritesPerSec, 200) {
		t.Errorf("got %+v, want valid with 200 writes/s from the new baseline", r)
	}
}

func TestADiskMissingFromDiskstatsIsUnavailableAndStartsAgainFromABaseline(t *testing.T) {
	s := newStage(t)
	d := NewDisk(s.root, "vda")
	s.load(early, nil)
	d.Sample(t0)

	var others []string
	for _, l := range strings.Split(fixture(t, early, "proc/diskstats"), "\n") {
		if !strings.Contains(l, " vda ") {
			others = append(others, l)
		}
	}
	s.load(early, map[string]string{"proc/diskstats": strings.Join(others, "\n")})
	_, err := d.Sample(t10)
	wantUnavailable(t, err, `"vda"`)

	s.load(later, nil)
	if r, err := d.Sample(t20); err != nil || r.Valid {
		t.Errorf("back in diskstats: got valid %v, %v; want a new baseline", r.Valid, err)
	}
}

func TestADiskWithoutDiskstatsIsUnavailable(t *testing.T) {
	s := newStage(t)
	s.load(early, map[string]string{"proc/diskstats": ""})
	_, err := NewDisk(s.root, "vda").Sample(t0)
	wantUnavailable(t, err, "proc/diskstats")
}

func TestMalformedDiskstatsIsAnErrorNotUnavailable(t *testing.T) {
	s := newStage(t)
	bad := strings.Replace(fixture(t, early, "proc/diskstats"), "vda 752318", "vda x", 1)
	s.load(early, map[string]string{"proc/diskstats": bad})
	_, err := NewDisk(s.root, "vda").Sample(t0)
	wantBroken(t, err, "proc/diskstats")
}

// sysfs builds root/sys/dev/block as the kernel lays it out: MAJ:MIN
// symlinks to the devices' directories.
func sysfs(t *testing.T, links map[string]string) Root {
	t.Helper()
	root := Root(t.TempDir())
	dir := root.path("sys", "dev", "block")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for number, target := range links {
		if err := os.MkdirAll(filepath.Join(dir, target), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dir, number)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDeviceNumbersAreNamedAsDiskstatsNamesThem(t *testing.T) {
	root := sysfs(t, map[string]string{
		"254:0": "../../devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
		"253:0": "../../devices/virtual/block/dm-0",
		"259:1": "../../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p1",
	})
	for _, tt := range []struct {
		name         string
		major, minor uint32
		want         string
	}{
		{"a whole disk", 254, 0, "vda"},
		{"a device-mapper volume", 253, 0, "dm-0"},
		{"a partition, not its disk", 259, 1, "nvme0n1p1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := deviceByNumber(root, "/data", tt.major, tt.minor)
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestADirWithoutABlockDeviceIsUnavailable(t *testing.T) {
	root := sysfs(t, map[string]string{"254:0": "../../devices/virtual/block/vda"})
	_, err := deviceByNumber(root, "/data", 0, 52)
	wantUnavailable(t, err, "/data is on anonymous device 0:52")
	_, err = deviceByNumber(root, "/data", 8, 0)
	wantUnavailable(t, err, "sys/dev/block/8:0")
}

func TestDeviceForStatsTheRealDirAndLooksItUpUnderRoot(t *testing.T) {
	dir := t.TempDir()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	major, minor := unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev))
	root := sysfs(t, map[string]string{fmt.Sprintf("%d:%d", major, minor): "../../devices/virtual/block/fakedisk"})
	got, err := DeviceFor(root, dir)
	if major == 0 {
		wantUnavailable(t, err, dir)
		return
	}
	if err != nil || got != "fakedisk" {
		t.Errorf("got %q, %v; want fakedisk, the fixture's name for %d:%d", got, err, major, minor)
	}
}

func TestDeviceForAMissingDirIsAnErrorNotUnavailable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := DeviceFor(sysfs(t, nil), dir)
	wantBroken(t, err, dir)
}
