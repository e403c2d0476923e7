package faults

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// waitLimit bounds every wait for something to happen. It is a failure
// bound, not a measurement.
const waitLimit = 30 * time.Second

// TestMain fails the run if a test left a mount or a go-fuse or toxiproxy
// goroutine behind: the fault injectors run inside other tests' processes,
// so their teardown must be complete.
func TestMain(m *testing.M) {
	if path := os.Getenv(syncChildEnv); path != "" {
		syncChild(path)
	}
	code := m.Run()
	if code == 0 {
		if err := checkNoLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "faults:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func checkNoLeaks() error {
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(b), "fuse.etcdvisor-slowfs") {
		return fmt.Errorf("a slowfs is still mounted:\n%s", b)
	}
	// Goroutines end a moment after the sockets and files they served
	// are closed, so poll.
	var leaked []string
	for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		leaked = leakedGoroutines()
		if len(leaked) == 0 {
			return nil
		}
	}
	return fmt.Errorf("%d goroutines left behind:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
}

func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/hanwen/go-fuse") || strings.Contains(g, "github.com/Shopify/toxiproxy") {
			leaked = append(leaked, g)
		}
	}
	return leaked
}

// waitFor polls cond until it holds, failing the test after waitLimit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitLimit)
		}
	}
}
