package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsAreFreeDistinctAndOutsideTheEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := Port("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < low || p >= ephemeralStart() {
			t.Fatalf("port %d outside %d-%d", p, low, ephemeralStart()-1)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		ln.Close()
	}
}

func TestATakenPortIsNotHandedOut(t *testing.T) {
	// In a window of 8 ports, hold 7: the one left is the only answer.
	const lo = 29000
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	mu.Lock()
	for p := lo; p < lo+8; p++ {
		delete(issued, p) // an earlier run of this test (-count) issued one
	}
	mu.Unlock()
	free := -1
	for p := lo; p < lo+8; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(p)))
		if err != nil {
			continue // something else holds it: just as taken
		}
		if free < 0 {
			free = p
			ln.Close()
			continue
		}
		held = append(held, ln)
	}
	if free < 0 {
		t.Skip("every port in the window is taken on this machine")
	}
	got, err := portIn("127.0.0.2", lo, lo+8)
	if err != nil {
		t.Fatal(err)
	}
	if got != free {
		t.Fatalf("got port %d, want %d, the only one free in %d-%d", got, free, lo, lo+7)
	}
	if _, err := portIn("127.0.0.2", lo, lo+8); err == nil {
		t.Fatal("a second pick found a port, but the only free one was already issued")
	}
}
