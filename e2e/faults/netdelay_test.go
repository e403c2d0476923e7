package faults

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"
)

// echoServer serves on 127.0.0.1, writing back whatever it reads, until
// cleanup.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { io.Copy(c, c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// roundTrip sends msg on c and returns what comes back, and how long that
// took.
func roundTrip(t *testing.T, c net.Conn, msg string) (string, time.Duration) {
	t.Helper()
	c.SetDeadline(time.Now().Add(waitLimit))
	start := time.Now()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	return string(buf), time.Since(start)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// latencyToxics returns the proxy's latency toxics by direction, as
// toxiproxy holds them.
func latencyToxics(t *testing.T, d *DelayProxy) map[string]*toxics.LatencyToxic {
	t.Helper()
	got := map[string]*toxics.LatencyToxic{}
	for _, tx := range d.proxy.Toxics.GetToxicArray() {
		w := tx.(*toxics.ToxicWrapper)
		lt, ok := w.Toxic.(*toxics.LatencyToxic)
		if !ok {
			t.Fatalf("toxic %s is a %s, want latency", w.Name, w.Type)
		}
		got[w.Stream] = lt
	}
	return got
}

func TestDelayProxyForwardsAndDelaysBothWaysOnceLatencyIsSet(t *testing.T) {
	d, err := NewDelayProxy("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	c := dial(t, d.Addr())
	if got, _ := roundTrip(t, c, "no delay"); got != "no delay" {
		t.Errorf("round trip without latency: got %q, want %q", got, "no delay")
	}
	if got := latencyToxics(t, d); len(got) != 0 {
		t.Errorf("toxics before SetLatency: got %d, want none", len(got))
	}

	const latency = 100 * time.Millisecond
	if err := d.SetLatency(latency, 0); err != nil {
		t.Fatal(err)
	}
	toxicsSet := latencyToxics(t, d)
	for _, dir := range []string{"upstream", "downstream"} {
		if lt := toxicsSet[dir]; lt == nil || lt.Latency != 100 || lt.Jitter != 0 {
			t.Errorf("%s latency toxic: got %+v, want 100ms, no jitter", dir, lt)
		}
	}
	// The open connection gets the delay too, and a new one does. Each
	// direction is delayed, so a round trip takes at least twice the
	// latency; that is a lower bound of the injected behaviour only.
	for name, conn := range map[string]net.Conn{"open connection": c, "new connection": dial(t, d.Addr())} {
		got, took := roundTrip(t, conn, "delayed")
		if got != "delayed" {
			t.Errorf("%s: got %q, want %q", name, got, "delayed")
		}
		if took < 2*latency {
			t.Errorf("%s: round trip took %s, want at least %s", name, took, 2*latency)
		}
	}

	if err := d.SetLatency(0, 0); err != nil {
		t.Fatal(err)
	}
	if got := latencyToxics(t, d); len(got) != 0 {
		t.Errorf("toxics after SetLatency(0): got %d, want none", len(got))
	}
	if got, _ := roundTrip(t, c, "undelayed"); got != "undelayed" {
		t.Errorf("round trip after removing latency: got %q, want %q", got, "undelayed")
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(waitLimit))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read on a connection through the closed proxy: got %d bytes, want an error", n)
	}
	if c, err := net.Dial("tcp", d.Addr()); err == nil {
		c.Close()
		t.Errorf("dial %s after Close: connected, want refused", d.Addr())
	}
	if err := d.SetLatency(latency, 0); err == nil {
		t.Error("SetLatency after Close: got nil error")
	}
}

func TestDelayProxyRefusesAddressesOffLoopback(t *testing.T) {
	upstream := "127.0.0.1:2379"
	tests := []struct {
		name     string
		listen   string
		upstream string
	}{
		{name: "listen on every interface", listen: ":0", upstream: upstream},
		{name: "listen on 0.0.0.0", listen: "0.0.0.0:0", upstream: upstream},
		{name: "listen on a host name", listen: "localhost:0", upstream: upstream},
		{name: "upstream off the machine", listen: "127.0.0.1:0", upstream: "10.0.0.1:2379"},
		{name: "upstream by host name", listen: "127.0.0.1:0", upstream: "example.com:2379"},
		{name: "upstream without a port", listen: "127.0.0.1:0", upstream: "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewDelayProxy(tt.listen, tt.upstream)
			if err == nil {
				d.Close()
				t.Fatalf("NewDelayProxy(%q, %q): got nil error", tt.listen, tt.upstream)
			}
		})
	}
}

func TestDelayProxyRefusesJitterAboveLatencyAndNegativeValues(t *testing.T) {
	d, err := NewDelayProxy("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	tests := []struct {
		name            string
		latency, jitter time.Duration
	}{
		{name: "negative latency", latency: -time.Millisecond},
		{name: "negative jitter", latency: time.Millisecond, jitter: -time.Millisecond},
		{name: "jitter above latency", latency: time.Millisecond, jitter: 2 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := d.SetLatency(tt.latency, tt.jitter); err == nil {
				t.Errorf("SetLatency(%s, %s): got nil error", tt.latency, tt.jitter)
			}
		})
	}
	if got := latencyToxics(t, d); len(got) != 0 {
		t.Errorf("toxics after refused settings: got %d, want none", len(got))
	}
}
