package supervisor

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/metrics"
	"github.com/etcdvisor/etcdvisor/internal/notify"
)

// listenNotify is systemd's end of the notify protocol: it counts
// WATCHDOG=1 datagrams.
func listenNotify(t *testing.T) (*atomic.Int64, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "n.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var pings atomic.Int64
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:n]), "WATCHDOG=1") {
				pings.Add(1)
			}
		}
	}()
	return &pings, path
}

func waitPings(t *testing.T, pings *atomic.Int64, atLeast int64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); pings.Load() < atLeast; {
		if time.Now().After(deadline) {
			t.Fatalf("got %d watchdog pings, want at least %d", pings.Load(), atLeast)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAStalledSupervisorLoopStopsTheWatchdogPings(t *testing.T) {
	pings, path := listenNotify(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "100000") // ping every 50ms

	var stall atomic.Bool
	stalled, release := make(chan struct{}), make(chan struct{})
	s := &Supervisor{
		cfg:     config.DefaultWithDataDir(t.TempDir()),
		lg:      zaptest.NewLogger(t),
		notify:  notify.New(zaptest.NewLogger(t)),
		metrics: metrics.New("test", "3.7.3", "go", time.Now()),
		phase:   api.PhaseStarting,
		tickHook: func() {
			if stall.Load() {
				stalled <- struct{}{}
				<-release
			}
		},
	}
	if got := s.notify.WatchdogInterval(); got != 50*time.Millisecond {
		t.Fatalf("watchdog interval %s, want 50ms (half of WATCHDOG_USEC)", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.loop(ctx, nil) }()

	waitPings(t, pings, 3)

	// Stall the loop: once it is stuck, no more pings may arrive, however
	// many watchdog intervals pass.
	stall.Store(true)
	<-stalled
	// Pings sent before the stall are in the socket already; give the
	// reader a moment to count them.
	time.Sleep(500 * time.Millisecond)
	before := pings.Load()
	time.Sleep(20 * s.notify.WatchdogInterval())
	if after := pings.Load(); after != before {
		t.Fatalf("the stalled loop still pinged: %d pings while stuck", after-before)
	}

	// Unstall: pings resume.
	stall.Store(false)
	close(release)
	waitPings(t, pings, before+2)

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("loop returned %v", err)
	}
}

func TestStatusLineNamesRoleMembersAndErrors(t *testing.T) {
	tests := []struct {
		name string
		st   api.Status
		want string
	}{
		{"leader", api.Status{Phase: "ready", IsLeader: true, LeaderID: "a", Members: make([]api.Member, 3), RaftTerm: 4, DBSize: 2 << 20},
			"ready, leader, 3 member(s), term 4, db 2.0 MiB"},
		{"follower", api.Status{Phase: "ready", LeaderID: "b", Members: make([]api.Member, 3), RaftTerm: 4},
			"ready, follower, 3 member(s), term 4, db 0 B"},
		{"no leader", api.Status{Phase: "ready", Members: make([]api.Member, 3), RaftTerm: 9},
			"ready, no leader, 3 member(s), term 9, db 0 B"},
		{"member errors", api.Status{Phase: "ready", IsLeader: true, LeaderID: "a", Errors: []string{"alarm:NOSPACE"}},
			"ready, leader, 0 member(s), term 0, db 0 B, errors: alarm:NOSPACE"},
		{"unreachable member", api.Status{Phase: "ready", Error: "read member status: deadline exceeded"},
			"ready: read member status: deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statusLine(tt.st); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
