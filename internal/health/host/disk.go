package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/procfs/blockdevice"
	"golang.org/x/sys/unix"
)

// DiskReading is one block device's activity over the interval between two
// samples. Latencies come from completed I/Os only: a write stuck in the
// device shows in InFlight, Utilization and QueueDepth before it shows in
// WriteLatency.
type DiskReading struct {
	// Valid is false for the first sample, and for one that follows a
	// counter reset or wrap or a clock that did not move forward: there is
	// no baseline, so the rates are zero. InFlight is set regardless.
	Valid bool
	// Device is the name in /proc/diskstats ("nvme0n1", "dm-0", "sda1").
	Device string
	// Interval is the wall time since the previous sample; 0 when not Valid.
	Interval time.Duration
	// Utilization is the fraction of wall time (0..1) the device had at
	// least one I/O in flight (Δio_ticks / Δwall).
	Utilization float64
	// QueueDepth is the average number of I/Os in flight, queued or being
	// served (Δweighted_io_ticks / Δwall).
	QueueDepth float64
	// WritesPerSec is writes completed per second.
	WritesPerSec float64
	// WriteLatency is the mean time from issue to completion of the writes
	// completed in the interval, queueing included (Δwrite_ticks /
	// Δwrites); 0 when none completed.
	WriteLatency time.Duration
	// HasFlush is false when the kernel's diskstats lacks the flush fields
	// (before Linux 5.5); FlushesPerSec and FlushLatency are then 0.
	HasFlush bool
	// FlushesPerSec is cache flushes (what fsync sends to a device with a
	// volatile write cache) completed per second.
	FlushesPerSec float64
	// FlushLatency is the mean time of the flushes completed in the
	// interval (Δflush_ticks / Δflushes); 0 when none completed.
	FlushLatency time.Duration
	// InFlight is the number of I/Os in flight at the moment of the sample.
	InFlight uint64
}

// Disk samples one block device's line of root/proc/diskstats. It uses
// procfs's blockdevice rather than gopsutil because gopsutil's IOCounters
// drops the flush fields, and a slow flush is what stalls etcd's fsync.
// It is safe for concurrent use, but each Sample measures from the previous
// one whoever called it: give each consumer its own Disk.
type Disk struct {
	root Root
	dev  string

	mu     sync.Mutex
	prev   blockdevice.IOStats
	prevAt time.Time
}

// NewDisk returns a sampler of the device named dev in root/proc/diskstats,
// as DeviceFor finds it.
func NewDisk(root Root, dev string) *Disk {
	return &Disk{root: root, dev: dev}
}

// Sample reads the device's counters at now. A device missing from
// diskstats (removed, or a wrong name) gives an error wrapping
// ErrUnavailable, and the next sample it appears in starts a new baseline.
func (d *Disk) Sample(now time.Time) (DiskReading, error) {
	d.mu.Lock()
	defer d.mu.Unlock()

	path := d.root.path("proc", "diskstats")
	bfs, err := blockdevice.NewFS(d.root.path("proc"), d.root.path("sys"))
	if err != nil {
		return DiskReading{}, readErr(path, err)
	}
	all, err := bfs.ProcDiskstats()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return DiskReading{}, readErr(path, err)
	}
	if err != nil {
		return DiskReading{}, fmt.Errorf("parse %s: %w", path, err)
	}

	i := findDisk(all, d.dev)
	if i < 0 {
		d.prevAt = time.Time{}
		return DiskReading{}, fmt.Errorf("%w: no device %q in %s", ErrUnavailable, d.dev, path)
	}
	cur := all[i].IOStats
	prev, prevAt := d.prev, d.prevAt
	d.prev, d.prevAt = cur, now

	r := DiskReading{Device: d.dev, HasFlush: all[i].IoStatsCount >= 20, InFlight: cur.IOsInProgress}
	dt, ok := interval(prevAt, now)
	if !ok || !forward(diskCounters(prev), diskCounters(cur)) {
		return r, nil
	}
	r.Valid, r.Interval = true, dt
	wallMS := float64(dt) / float64(time.Millisecond)
	r.Utilization = fraction(float64(cur.IOsTotalTicks-prev.IOsTotalTicks), wallMS)
	r.QueueDepth = float64(cur.WeightedIOTicks-prev.WeightedIOTicks) / wallMS
	writes := cur.WriteIOs - prev.WriteIOs
	r.WritesPerSec = perSecond(writes, dt)
	r.WriteLatency = meanMS(cur.WriteTicks-prev.WriteTicks, writes)
	if r.HasFlush {
		flushes := cur.FlushRequestsCompleted - prev.FlushRequestsCompleted
		r.FlushesPerSec = perSecond(flushes, dt)
		r.FlushLatency = meanMS(cur.TimeSpentFlushing-prev.TimeSpentFlushing, flushes)
	}
	return r, nil
}

func findDisk(all []blockdevice.Diskstats, dev string) int {
	for i, s := range all {
		if s.DeviceName == dev {
			return i
		}
	}
	return -1
}

// diskCounters lists the counters Sample takes differences of, for the
// reset check.
func diskCounters(s blockdevice.IOStats) []uint64 {
	return []uint64{s.IOsTotalTicks, s.WeightedIOTicks, s.WriteIOs, s.WriteTicks, s.FlushRequestsCompleted, s.TimeSpentFlushing}
}

// meanMS is ticks milliseconds shared over n operations; 0 for none.
func meanMS(ticks, n uint64) time.Duration {
	if n == 0 {
		return 0
	}
	return time.Duration(float64(ticks) / float64(n) * float64(time.Millisecond))
}

// DeviceFor names the block device holding dir, as /proc/diskstats names
// it: the device number of dir (stat(2) on the real dir, not under root)
// looked up in root/sys/dev/block. A partition or device-mapper volume is
// named as itself, not as the disk beneath it. A dir on a filesystem with no
// block device (overlayfs, tmpfs, NFS; also btrfs, whose files carry an
// anonymous device number) gives an error wrapping ErrUnavailable.
func DeviceFor(root Root, dir string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", dir, err)
	}
	return deviceByNumber(root, dir, unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
}

// deviceByNumber is DeviceFor after the stat: /sys/dev/block/MAJ:MIN is a
// symlink to the device's sysfs directory, whose name is the kernel's name
// for the device.
func deviceByNumber(root Root, dir string, major, minor uint32) (string, error) {
	if major == 0 {
		return "", fmt.Errorf("%w: %s is on anonymous device 0:%d, which has no block device (overlayfs, tmpfs, btrfs or a network filesystem)", ErrUnavailable, dir, minor)
	}
	link := root.path("sys", "dev", "block", fmt.Sprintf("%d:%d", major, minor))
	target, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("block device of %s: %w", dir, readErr(link, err))
	}
	return filepath.Base(target), nil
}
