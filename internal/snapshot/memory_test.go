package snapshot

import (
	"context"
	"crypto/rand"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestSaveOfA64MiBDBKeepsTheHeapSmall saves a ~64 MiB DB plain, and
// compressed and encrypted, and reports the peak HeapInuse each adds,
// sampled every millisecond. It logs the figures rather than asserting
// them: the embedded member shares the heap.
func TestSaveOfA64MiBDBKeepsTheHeapSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB into etcd")
	}
	m := startMember(t, newSpec(t, t.TempDir()))
	defer m.stop()
	ctx := context.Background()
	// 1 MiB random values: incompressible, so every byte goes through
	// zstd and age at full size.
	val := make([]byte, 1<<20)
	for i := 0; i < 64; i++ {
		rand.Read(val)
		if _, err := m.cli.Put(ctx, key(i), string(val)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	// Move the WAL's and the puts' garbage out of the way of the figure.
	m.cli.Compact(ctx, 64, clientv3.WithCompactPhysical())
	id := newIdentity(t)
	dir := t.TempDir()

	// The member runs in this process: its side of the stream (bbolt
	// WriteTo, gRPC send buffers) shows in the same heap. Reading the bare
	// stream into io.Discard measures that share, so Save's own is the rest.
	bare := peakHeap(t, func() error {
		resp, err := m.cli.SnapshotWithVersion(ctx)
		if err != nil {
			return err
		}
		defer resp.Snapshot.Close()
		_, err = io.Copy(io.Discard, resp.Snapshot)
		return err
	})
	var man Manifest
	for _, tt := range []struct {
		name string
		o    Options
	}{
		{"plain", Options{Dir: dir, Name: "plain"}},
		{"zstd and age", Options{Dir: dir, Name: "zstd-age", Compress: true, Recipients: []age.Recipient{id.Recipient()}}},
	} {
		peak := peakHeap(t, func() error {
			var err error
			man, err = Save(ctx, m.cli, m.clientURL, tt.o)
			return err
		})
		if man.DBSize < 64<<20 {
			t.Fatalf("got a %d-byte DB, want at least 64 MiB", man.DBSize)
		}
		t.Logf("Save %s of a %.1f MiB DB (%.1f MiB on disk) in %s: HeapInuse peak %.1f MiB above the heap before; reading the bare stream: %.1f MiB",
			tt.name, mib(man.DBSize), mib(man.Size), man.Duration, mib(peak), mib(bare))
	}
}

func mib[T int64 | uint64](n T) float64 { return float64(n) / (1 << 20) }

// peakHeap runs f and returns the highest HeapInuse, sampled every
// millisecond, above HeapInuse after a GC before f. GOGC is 5 meanwhile:
// with the default 100 the peak measures the garbage the pacer lets pile up
// (half the member's heap), not what f holds.
func peakHeap(t *testing.T, f func() error) uint64 {
	t.Helper()
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapInuse, ms.HeapInuse
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	err := f()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return peak - base
}
