// Package freeport hands out loopback TCP ports for tests and benchmarks to
// give to a process that binds them later (an etcd member, an etcdvisor).
//
// A port found by listening on port 0 comes from the kernel's ephemeral
// range. Once that listener closes, the kernel may give the same port to
// the next socket that binds port 0, often another test's listener, before
// the process it was meant for binds it; CI saw exactly that as "address
// already in use". The kernel never hands out ports below the ephemeral
// range on its own, so this package picks those, at random, checks each is
// free, and never returns the same port twice in one process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// low is the first port used; below it sit well-known services.
const low = 10000

var (
	mu     sync.Mutex
	issued = map[int]bool{}
)

// Port returns a TCP port on ip that was free a moment ago and lies outside
// the kernel's ephemeral range.
func Port(ip string) (int, error) {
	high := ephemeralStart()
	if high-low < 1000 {
		return kernelPort(ip)
	}
	return portIn(ip, low, high)
}

// portIn picks a free port in [low, high) not issued before.
func portIn(ip string, low, high int) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 100 {
		p := low + rand.IntN(high-low)
		if issued[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			continue // taken: try another
		}
		ln.Close()
		issued[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free port on %s in %d-%d after 100 tries", ip, low, high-1)
}

// Addr is Port as "ip:port".
func Addr(ip string) (string, error) {
	p, err := Port(ip)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip, strconv.Itoa(p)), nil
}

// ephemeralStart reads the first port of the kernel's ephemeral range; on
// a system without the file it assumes Linux's default.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// kernelPort is the fallback when the ephemeral range leaves no room below
// it: the kernel's choice, with the race this package otherwise avoids.
func kernelPort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", ip, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// TestAddr is Addr for a test: it ends the test if no port is found.
func TestAddr(t testing.TB, ip string) string {
	t.Helper()
	a, err := Addr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
