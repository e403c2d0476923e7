package diskcheck

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunWritesTheSizeInBlocksAndLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	var calls int
	var last, lastTotal int64
	r, err := Run(context.Background(), dir, Options{
		Size:      64 << 10,
		BlockSize: 2300,
		Progress: func(written, total int64) {
			calls++
			last, lastTotal = written, total
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// 65536 bytes hold 28 whole blocks of 2300.
	if r.Count != 28 || r.Written != 28*2300 || r.BlockSize != 2300 || r.Dir != dir {
		t.Fatalf("got count %d, written %d, block %d, dir %s; want 28 blocks of 2300 bytes in %s", r.Count, r.Written, r.BlockSize, r.Dir, dir)
	}
	if !(0 <= r.P50 && r.P50 <= r.P90 && r.P90 <= r.P99 && r.P99 <= r.Max && 0 < r.Max && r.Max <= r.Took) {
		t.Fatalf("got %+v; want p50 <= p90 <= p99 <= max <= took, max > 0", r)
	}
	if r.Target != EtcdTarget || r.Pass != (r.P99 < EtcdTarget) || r.Verdict == "" {
		t.Fatalf("got target %s, pass %t, verdict %q for p99 %s", r.Target, r.Pass, r.Verdict, r.P99)
	}
	if calls != 28 || last != r.Written || lastTotal != r.Written {
		t.Fatalf("progress: %d calls, last %d of %d; want 28 calls ending at %d of %d", calls, last, lastTotal, r.Written, r.Written)
	}
	assertEmpty(t, dir)
}

func TestRunRemovesItsFileWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Run(ctx, dir, Options{
		Size:      1 << 20,
		BlockSize: 4096,
		Progress: func(written, _ int64) {
			if written == 3*4096 {
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "after 12288 of 1048576 bytes") {
		t.Fatalf("got %v; want context.Canceled after 12288 of 1048576 bytes", err)
	}
	assertEmpty(t, dir)
}

func TestRunRefusesDirectoriesItCannotUse(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(tmp, "read-only")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dir  string
		opts Options
		want string
	}{
		{name: "missing", dir: filepath.Join(tmp, "none"), want: filepath.Join(tmp, "none") + " does not exist"},
		{name: "a file", dir: file, want: file + " is not a directory"},
		{name: "read-only", dir: readOnly, want: "cannot write in " + readOnly},
		{name: "size below one block", dir: tmp, opts: Options{Size: 100, BlockSize: 2300}, want: "less than one block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "read-only" && os.Geteuid() == 0 {
				t.Skip("root writes in a read-only directory")
			}
			_, err := Run(context.Background(), tc.dir, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		name     string
		p99      time.Duration
		wantPass bool
		want     string
	}{
		{"fast", 3140 * time.Microsecond, true, "fdatasync p99 3.1ms is below the 10ms etcd needs"},
		{"just below shows below the target", 9999 * time.Microsecond, true, "fdatasync p99 9.9ms is below the 10ms etcd needs"},
		{"slow", 14250 * time.Microsecond, false, "fdatasync p99 14.2ms is above the 10ms etcd needs: etcd on this disk will see heartbeat timeouts under load"},
		{"at the target fails", 10 * time.Millisecond, false, "fdatasync p99 10ms is not below the 10ms etcd needs: etcd on this disk will see heartbeat timeouts under load"},
		{"sub-millisecond", 420 * time.Microsecond, true, "fdatasync p99 420µs is below the 10ms etcd needs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pass, got := verdict(tc.p99, EtcdTarget)
			if pass != tc.wantPass || got != tc.want {
				t.Errorf("got %t %q, want %t %q", pass, got, tc.wantPass, tc.want)
			}
		})
	}
}

func TestQuantilesAreExactOverAllSamples(t *testing.T) {
	var vs []time.Duration
	for i := range 1000 {
		vs = append(vs, time.Duration(i+1)*time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.50, 500 * time.Microsecond}, {0.90, 900 * time.Microsecond}, {0.99, 990 * time.Microsecond}} {
		if got := quantile(vs, tc.q); got != tc.want {
			t.Errorf("quantile %.2f: got %s, want %s", tc.q, got, tc.want)
		}
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("%s holds %v after the check, want nothing", dir, left)
	}
}
