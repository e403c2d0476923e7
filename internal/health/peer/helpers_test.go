package peer

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hangGuard only keeps a broken test from hanging; nothing asserts on it.
const hangGuard = 30 * time.Second

// fakePeer is an httptest server standing in for a peer's listener. It
// counts requests and connections.
type fakePeer struct {
	*httptest.Server
	requests atomic.Int64
	conns    atomic.Int64 // ever opened
	open     atomic.Int64 // open now

	mu    sync.Mutex
	paths map[string]int
}

// newFakePeer serves handle (nil: answer 200 at once) on 127.0.0.1. With
// tlsCfg it serves TLS with that config. Each setup changes the server
// before it starts.
func newFakePeer(t *testing.T, tlsCfg *testTLS, handle http.HandlerFunc, setup ...func(*httptest.Server)) *fakePeer {
	t.Helper()
	fp := &fakePeer{paths: map[string]int{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fp.requests.Add(1)
		fp.mu.Lock()
		fp.paths[r.URL.Path]++
		fp.mu.Unlock()
		if handle != nil {
			handle(w, r)
			return
		}
		w.Write([]byte(`{"OK":true}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			fp.conns.Add(1)
			fp.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			fp.open.Add(-1)
		}
	}
	fp.Server = srv
	for _, f := range setup {
		f(srv)
	}
	if tlsCfg != nil {
		srv.TLS = tlsCfg.server
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return fp
}

// pathsSeen returns the request paths the peer was asked for.
func (fp *fakePeer) pathsSeen() map[string]int {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	out := make(map[string]int, len(fp.paths))
	for p, n := range fp.paths {
		out[p] = n
	}
	return out
}

// hangingHandler never answers; it returns when the client goes away or
// the test ends. Its release is registered after the server's Close, so it
// runs first and Close does not wait on it.
func hangingHandler(t *testing.T) http.HandlerFunc {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
}

// run starts p.Run and returns the function that stops it and waits for
// Run's result; the test's cleanup calls it too.
func run(t *testing.T, p *Prober) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(hangGuard):
				t.Errorf("Run did not return within %v of its context ending", hangGuard)
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// eventually polls cond until it holds, failing the test after hangGuard.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within %v", what, hangGuard)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// probeGoroutines returns the stacks of goroutines still in the prober's
// Run or a probe loop.
func probeGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "health/peer.(*member).loop") || strings.Contains(g, "health/peer.(*Prober).Run") {
			out = append(out, g)
		}
	}
	return out
}

func stats(p *Prober, name string) PeerStats {
	return p.Stats(time.Now())[name]
}
