package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/rs/zerolog"
)

// DelayProxy is a TCP proxy between two loopback addresses that can delay
// the bytes it forwards, standing in for netem, which the test kernels
// lack. It is toxiproxy run as a library, with its logging off.
type DelayProxy struct {
	proxy *toxiproxy.Proxy
	addr  string

	mu     sync.Mutex // serializes SetLatency and Close
	closed bool
}

// NewDelayProxy listens on listen ("127.0.0.1:0" picks a port) and
// forwards every connection to upstream, with no delay until SetLatency.
// Both must be loopback IP addresses: the proxy must not be able to send
// test traffic off the machine.
func NewDelayProxy(listen, upstream string) (*DelayProxy, error) {
	if err := requireLoopback("listen", listen); err != nil {
		return nil, err
	}
	if err := requireLoopback("upstream", upstream); err != nil {
		return nil, err
	}
	// A registry of its own, so nothing lands in the default one; no
	// collectors are enabled on it anyway.
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(server, "delay-"+upstream, listen, upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("delay proxy: listen on %s: %w", listen, err)
	}
	// Start has returned, so the proxy has replaced a :0 port with the
	// real one.
	return &DelayProxy{proxy: p, addr: p.Listen}, nil
}

// Addr returns the address the proxy listens on, with the real port.
func (d *DelayProxy) Addr() string { return d.addr }

// SetLatency delays every byte by latency ± jitter in each direction, on
// open connections and new ones, like netem on a link: a request and its
// reply take at least 2×latency more. toxiproxy counts whole
// milliseconds, so both are rounded up to a whole millisecond. Latency 0
// removes the delay. Jitter may not exceed latency.
func (d *DelayProxy) SetLatency(latency, jitter time.Duration) error {
	if latency < 0 || jitter < 0 || jitter > latency {
		return fmt.Errorf("delay proxy: latency %s, jitter %s: want 0 <= jitter <= latency", latency, jitter)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("delay proxy: closed")
	}
	// Remove, then add: updating a toxic in place rewrites its settings
	// while connections' goroutines read them (a data race in toxiproxy).
	for _, dir := range directions {
		name := latencyToxicName(dir)
		if d.proxy.Toxics.GetToxic(name) == nil {
			continue
		}
		if err := d.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
			return fmt.Errorf("delay proxy: remove %s: %w", name, err)
		}
	}
	if latency == 0 {
		return nil
	}
	for _, dir := range directions {
		toxic, err := json.Marshal(map[string]any{
			"name":     latencyToxicName(dir),
			"type":     "latency",
			"stream":   dir.String(),
			"toxicity": 1.0,
			"attributes": map[string]int64{
				"latency": ceilMillis(latency),
				"jitter":  ceilMillis(jitter),
			},
		})
		if err != nil {
			return err
		}
		if _, err := d.proxy.Toxics.AddToxicJson(bytes.NewReader(toxic)); err != nil {
			return fmt.Errorf("delay proxy: add %s latency: %w", dir, err)
		}
	}
	return nil
}

// Close stops listening and closes every proxied connection. It is
// idempotent.
func (d *DelayProxy) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.proxy.Stop()
	return nil
}

// directions are both ways through the proxy: upstream is client to
// server, downstream server to client.
var directions = []stream.Direction{stream.Upstream, stream.Downstream}

func latencyToxicName(dir stream.Direction) string { return "latency_" + dir.String() }

func ceilMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// requireLoopback refuses addr unless it is host:port with a loopback IP
// literal; a host name could resolve anywhere.
func requireLoopback(what, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("delay proxy: %s address %q: %w", what, addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("delay proxy: %s address %q is not a loopback IP: test traffic may only go to 127.0.0.0/8 or ::1", what, addr)
	}
	return nil
}
