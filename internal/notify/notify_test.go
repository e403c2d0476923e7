package notify

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func read(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read notify message: %v", err)
	}
	return string(buf[:n])
}

func TestNotifierSendsTheProtocolMessagesAndSkipsRepeatedStatus(t *testing.T) {
	conn := listen(t)
	n := New(zaptest.NewLogger(t))
	n.Ready("ready, leader")
	n.Status("ready, leader") // same as Ready's: not resent
	n.Status("ready, follower")
	n.Watchdog()
	n.Stopping("stopping")
	for _, want := range []string{
		"READY=1\nSTATUS=ready, leader",
		"STATUS=ready, follower",
		"WATCHDOG=1",
		"STOPPING=1\nSTATUS=stopping",
	} {
		if got := read(t, conn); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestWatchdogIntervalIsHalfOfWatchdogUsecAndRespectsWatchdogPid(t *testing.T) {
	tests := []struct {
		name, usec, pid string
		want            time.Duration
	}{
		{"no watchdog", "", "", 0},
		{"30s watchdog", "30000000", "", 15 * time.Second},
		{"meant for another process", "30000000", "1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			if got := New(zaptest.NewLogger(t)).WatchdogInterval(); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
