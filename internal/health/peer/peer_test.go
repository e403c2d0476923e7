package peer

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAnsweringPeerGetsSamplesOverOneConnection(t *testing.T) {
	fp := newFakePeer(t, nil, nil)
	var mu sync.Mutex
	observed := map[string]int{}
	p := New(Options{
		Interval: 10 * time.Millisecond,
		Timeout:  hangGuard, // a loss would reconnect and spoil the connection count
		Observe: func(peer string, d time.Duration) {
			if d <= 0 {
				t.Errorf("observed %v for %s, want a positive RTT", d, peer)
			}
			mu.Lock()
			observed[peer]++
			mu.Unlock()
		},
	})
	p.SetPeers(map[string][]string{"a": {fp.URL, "http://127.0.0.1:1"}})
	run(t, p)

	eventually(t, "five samples", func() bool { return stats(p, "a").RTT.Count >= 5 })
	got := stats(p, "a")
	if got.URL != fp.URL+ProbePath {
		t.Errorf("URL = %q, want the first peer URL plus %s", got.URL, ProbePath)
	}
	if got.Losses != 0 || got.LastError != "" {
		t.Errorf("losses = %d, last error %q; want none", got.Losses, got.LastError)
	}
	if got.LastSuccess.IsZero() || got.RTT.P50 <= 0 || got.RTT.P99 < got.RTT.P50 || got.RTT.Max < got.RTT.P99 {
		t.Errorf("stats = %+v, want a last success and 0 < p50 <= p99 <= max", got)
	}
	if paths := fp.pathsSeen(); len(paths) != 1 || paths[ProbePath] == 0 {
		t.Errorf("paths requested = %v, want only %s", paths, ProbePath)
	}
	if n := fp.conns.Load(); n != 1 {
		t.Errorf("the peer saw %d connections for %d requests, want 1: probes must reuse it", n, fp.requests.Load())
	}
	mu.Lock()
	if observed["a"] == 0 || len(observed) != 1 {
		t.Errorf("observed = %v, want samples of a only", observed)
	}
	mu.Unlock()
}

func TestSlowAnswersRaiseP99(t *testing.T) {
	const slow = 150 * time.Millisecond
	var mu sync.Mutex
	n := 0
	fp := newFakePeer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		sleep := n%3 == 0
		mu.Unlock()
		if sleep {
			time.Sleep(slow)
		}
	})
	p := New(Options{Interval: 10 * time.Millisecond, Timeout: hangGuard})
	p.SetPeers(map[string][]string{"a": {fp.URL}})
	run(t, p)

	eventually(t, "a slow sample among six", func() bool {
		s := stats(p, "a").RTT
		return s.Count >= 6 && s.P99 >= slow
	})
	if got := stats(p, "a"); got.RTT.Max < slow || got.Losses != 0 {
		t.Fatalf("stats = %+v, want max >= %v and no losses", got, slow)
	}
}

func TestPeerThatNeverAnswersShowsInFlightThenLosses(t *testing.T) {
	fp := newFakePeer(t, nil, hangingHandler(t))
	const timeout = 200 * time.Millisecond
	p := New(Options{Interval: 20 * time.Millisecond, Timeout: timeout})
	p.SetPeers(map[string][]string{"a": {fp.URL}})
	stop := run(t, p)

	eventually(t, "a probe in flight", func() bool { return stats(p, "a").InFlight > 0 })
	eventually(t, "two losses", func() bool { return stats(p, "a").Losses >= 2 })
	got := stats(p, "a")
	if got.RTT.Count != 0 || !got.LastSuccess.IsZero() {
		t.Errorf("stats = %+v, want no samples from a peer that never answers", got)
	}
	if !strings.Contains(got.LastError, "no answer within "+timeout.String()) || got.LastErrorAt.IsZero() {
		t.Errorf("last error %q at %v, want one naming the timeout", got.LastError, got.LastErrorAt)
	}
	if len(probeGoroutines()) < 2 {
		t.Fatal("Run and the probe loop not found by their stacks: the leak check below would prove nothing")
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if g := probeGoroutines(); len(g) > 0 {
		t.Fatalf("after Run returned, probe goroutines remain:\n%s", strings.Join(g, "\n\n"))
	}
}

func TestStopCutsAWaitingProbeShortWithoutALoss(t *testing.T) {
	fp := newFakePeer(t, nil, hangingHandler(t))
	// Run must return long before this timeout for the test to finish.
	p := New(Options{Interval: 10 * time.Millisecond, Timeout: time.Hour})
	p.SetPeers(map[string][]string{"a": {fp.URL}})
	stop := run(t, p)

	eventually(t, "the request at the peer", func() bool { return fp.requests.Load() > 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if g := probeGoroutines(); len(g) > 0 {
		t.Fatalf("after Run returned, probe goroutines remain:\n%s", strings.Join(g, "\n\n"))
	}
	if got := stats(p, "a"); got.Losses != 0 || got.InFlight != 0 || got.LastError != "" {
		t.Fatalf("stats = %+v, want the cut-off probe neither lost nor in flight", got)
	}
	eventually(t, "the peer's connection closed", func() bool { return fp.open.Load() == 0 })
}

func TestRemovedPeerIsNoLongerProbed(t *testing.T) {
	a, b := newFakePeer(t, nil, nil), newFakePeer(t, nil, nil)
	p := New(Options{Interval: 10 * time.Millisecond, Timeout: hangGuard})
	p.SetPeers(map[string][]string{"a": {a.URL}})
	run(t, p)

	// Added while running: probed.
	p.SetPeers(map[string][]string{"a": {a.URL}, "b": {b.URL}})
	eventually(t, "b probed", func() bool { return stats(p, "b").RTT.Count >= 2 })

	p.SetPeers(map[string][]string{"a": {a.URL}})
	eventually(t, "b's connection closed", func() bool { return b.open.Load() == 0 })
	seen := b.requests.Load()
	// The grace is counted in a's probes rather than in wall time.
	aBefore := a.requests.Load()
	eventually(t, "five more probes of a", func() bool { return a.requests.Load() >= aBefore+5 })
	if n := b.requests.Load(); n != seen {
		t.Fatalf("b served %d requests after its removal, want 0", n-seen)
	}
	if _, ok := p.Stats(time.Now())["b"]; ok {
		t.Fatal("Stats still reports the removed peer b")
	}
}

func TestChangedPeerURLIsProbedAfresh(t *testing.T) {
	old, moved := newFakePeer(t, nil, nil), newFakePeer(t, nil, nil)
	p := New(Options{Interval: 10 * time.Millisecond, Timeout: hangGuard})
	p.SetPeers(map[string][]string{"a": {old.URL}})
	run(t, p)
	eventually(t, "samples of the old URL", func() bool { return stats(p, "a").RTT.Count >= 2 })

	p.SetPeers(map[string][]string{"a": {moved.URL}})
	got := stats(p, "a")
	// Every sample left must be of a request the new URL served.
	if served := moved.requests.Load(); got.URL != moved.URL+ProbePath || int64(got.RTT.Count) > served {
		t.Fatalf("right after the move: %+v with %d requests served at the new URL, want the new URL and the old samples forgotten", got, served)
	}
	eventually(t, "samples of the new URL", func() bool { return stats(p, "a").RTT.Count >= 2 })
	eventually(t, "the old URL's connection closed", func() bool { return old.open.Load() == 0 })
}

func TestRefusedConnectionIsALoss(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	p := New(Options{Interval: 10 * time.Millisecond})
	p.SetPeers(map[string][]string{"gone": {url}})
	run(t, p)

	eventually(t, "a loss", func() bool { return stats(p, "gone").Losses > 0 })
	if got := stats(p, "gone"); !strings.Contains(got.LastError, url) {
		t.Fatalf("last error %q, want it to name %s", got.LastError, url)
	}
}

func TestUnusablePeerURLIsReportedNotProbed(t *testing.T) {
	tests := []struct {
		name string
		urls []string
		want string
	}{
		{"no URL", nil, "no peer URL"},
		{"unix socket", []string{"unix:///run/etcd.sock"}, "want http://host:port"},
		{"no host", []string{"http://"}, "want http://host:port"},
		{"unparsable", []string{"http://[::1"}, "peer URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(Options{})
			p.SetPeers(map[string][]string{"x": tt.urls})
			run(t, p)
			got, ok := p.Stats(time.Now())["x"]
			if !ok || !strings.Contains(got.LastError, tt.want) || got.URL != "" {
				t.Fatalf("got %+v (listed %v), want it listed with an error containing %q", got, ok, tt.want)
			}
		})
	}
}

func TestRunRefusesToRunTwiceAtOnce(t *testing.T) {
	p := New(Options{})
	run(t, p)
	eventually(t, "the first Run started", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.runCtx != nil
	})
	if err := p.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Run: got %v, want an already-running error", err)
	}
}

func TestDefaultsFillZeroOptions(t *testing.T) {
	got := New(Options{}).opts
	if got.Interval != DefaultInterval || got.Timeout != DefaultTimeout || got.Span != DefaultSpan {
		t.Fatalf("opts = %+v, want the defaults", got)
	}
}
