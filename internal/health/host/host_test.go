package host

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fixture roots: two samples of one host, ten seconds apart. The
// changes between them, and so the expected rates, are listed in
// testdata/README.md.
const (
	early = "testdata/t1"
	later = "testdata/t2"
)

var (
	t0  = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	t10 = t0.Add(10 * time.Second)
	t20 = t0.Add(20 * time.Second)
)

// stage is a root whose content a test replaces between samples, so one
// sampler reads t1 and then t2.
type stage struct {
	t    *testing.T
	root Root
}

func newStage(t *testing.T) *stage {
	return &stage{t: t, root: Root(t.TempDir())}
}

// load replaces the stage's content with a copy of the fixture root src,
// then applies edits: a path under the root mapped to new content, or to ""
// to remove the file.
func (s *stage) load(src string, edits map[string]string) {
	s.t.Helper()
	if err := os.RemoveAll(string(s.root)); err != nil {
		s.t.Fatal(err)
	}
	if err := os.CopyFS(string(s.root), os.DirFS(src)); err != nil {
		s.t.Fatal(err)
	}
	for rel, content := range edits {
		path := s.root.path(rel)
		if content == "" {
			if err := os.Remove(path); err != nil {
				s.t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
}

// fixture reads a fixture file, for edits built from it.
func fixture(t *testing.T, root, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func near(got, want float64) bool { return math.Abs(got-want) < 1e-9 }

// wantUnavailable fails unless err wraps ErrUnavailable and names what is
// missing.
func wantUnavailable(t *testing.T, err error, names string) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want an error wrapping ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), names) {
		t.Errorf("got %q, want it to name %s", err, names)
	}
}

// wantBroken fails unless err is a failure other than ErrUnavailable that
// names what is wrong.
func wantBroken(t *testing.T, err error, names string) {
	t.Helper()
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want an error that is not ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), names) {
		t.Errorf("got %q, want it to name %s", err, names)
	}
}

func TestSamplersAreSafeForConcurrentUse(t *testing.T) {
	p, d, n := NewPressure(early), NewDisk(early, "vda"), NewNet(early)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			now := t0.Add(time.Duration(i) * time.Second)
			if _, err := p.Sample(now); err != nil {
				t.Error(err)
			}
			if _, err := d.Sample(now); err != nil {
				t.Error(err)
			}
			if _, err := n.Sample(now); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// TestSamplersOnThisHostWorkOrSayUnavailable runs every sampler against the
// real root: each either works, with values in range, or says its source is
// unavailable; no other error.
func TestSamplersOnThisHostWorkOrSayUnavailable(t *testing.T) {
	const root = Root("/")
	ok := func(what string, err error) bool {
		t.Helper()
		if errors.Is(err, ErrUnavailable) {
			t.Logf("%s: %v", what, err)
			return false
		}
		if err != nil {
			t.Fatalf("%s: got %v, want success or ErrUnavailable", what, err)
		}
		return true
	}

	p := NewPressure(root)
	for range 2 {
		r, err := p.Sample(time.Now())
		if !ok("pressure", err) {
			break
		}
		for _, s := range []Stall{r.CPU, r.IO, r.Memory} {
			if s.Some < 0 || s.Some > 1 || s.Full < 0 || s.Full > 1 || s.SomeAvg10 < 0 || s.SomeAvg10 > 1 {
				t.Errorf("pressure: got %+v, want fractions in [0, 1]", s)
			}
		}
	}

	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if dev, err := DeviceFor(root, wd); ok("device of "+wd, err) {
		t.Logf("%s is on %s", wd, dev)
		d := NewDisk(root, dev)
		for range 2 {
			r, err := d.Sample(time.Now())
			if !ok("disk "+dev, err) {
				break
			}
			if r.Utilization < 0 || r.Utilization > 1 || r.QueueDepth < 0 || r.WriteLatency < 0 || r.FlushLatency < 0 {
				t.Errorf("disk %s: got %+v, want utilisation in [0, 1] and no negative figure", dev, r)
			}
		}
	}

	n := NewNet(root)
	for range 2 {
		r, err := n.Sample(time.Now())
		if !ok("net", err) {
			break
		}
		if r.DropsPerSec < 0 || r.ErrorsPerSec < 0 || r.RetransPerSec < 0 || r.RetransRatio < 0 {
			t.Errorf("net: got %+v, want no negative rate", r)
		}
	}
}
