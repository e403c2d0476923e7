package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/health/window"
)

// maxBody bounds what is read of an answer; the probing handler's is
// about 60 bytes. A longer body is cut, which costs the connection.
const maxBody = 64 << 10

// member is one probed peer.
type member struct {
	name   string
	rawURL string // as SetPeers gave it, to notice a change
	target string // rawURL + ProbePath; empty if rawURL is unusable
	opts   Options

	transport *http.Transport
	client    *http.Client
	rtt       *window.Window
	losses    *window.Window // the time each lost probe waited
	cancel    context.CancelFunc

	mu            sync.Mutex
	lastErr       string
	lastErrAt     time.Time
	lastSuccess   time.Time
	inFlightSince time.Time // zero when no probe waits
}

func newMember(name, rawURL string, opts Options) *member {
	m := &member{
		name:   name,
		rawURL: rawURL,
		opts:   opts,
		rtt:    window.New(opts.Span),
		losses: window.New(opts.Span),
	}
	target, err := probeURL(rawURL)
	if err != nil {
		m.lastErr, m.lastErrAt = fmt.Sprintf("peer %q: %v", name, err), time.Now()
		return m
	}
	m.target = target
	m.transport = newTransport(opts)
	m.client = &http.Client{
		Transport: m.transport,
		// A peer listener never redirects; following one would time
		// something else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return m
}

func probeURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("no peer URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("peer URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("peer URL %q: want http://host:port or https://host:port", raw)
	}
	return u.JoinPath(ProbePath).String(), nil
}

// newTransport keeps one connection per peer: probes are sequential, so a
// second would only hide a reconnect in the samples.
func newTransport(opts Options) *http.Transport {
	var tlsCfg *tls.Config
	if opts.TLS != nil {
		tlsCfg = opts.TLS.Clone()
		// HTTP/1.1 only. A custom TLS config turns off Go's automatic
		// HTTP/2, so if the caller's config offered h2 and the peer took
		// it, this transport would send HTTP/1 on an h2 connection. etcd's
		// peer listener offers only h2, and Go's TLS server lets an
		// http/1.1 client in without ALPN.
		tlsCfg.NextProtos = []string{"http/1.1"}
	}
	return &http.Transport{
		// Peer links never go through an HTTP proxy from the environment.
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: opts.Timeout,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
}

// stop ends the probe loop, if one runs; the loop closes the connection
// on its way out.
func (m *member) stop() {
	if m.cancel != nil {
		m.cancel()
	}
}

// loop probes at once and then every Interval until ctx is done. A probe
// that outlasts Interval makes the ticker drop ticks, so the next probe
// starts right after it instead of queueing a burst.
func (m *member) loop(ctx context.Context) {
	defer m.transport.CloseIdleConnections()
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for ctx.Err() == nil {
		m.probe(ctx)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// probe makes one request and records its outcome. The sample starts when
// the connection is in hand, so a new connection's dial and TLS handshake
// (after the first probe, or after a loss closed the connection) are left
// out; InFlight and the timeout count from the start.
func (m *member) probe(ctx context.Context) {
	start := time.Now()
	m.setInFlight(start)
	defer m.setInFlight(time.Time{})

	// Written by the transport, perhaps twice if it retries on a fresh
	// connection; atomic because httptrace does not promise which
	// goroutine calls it.
	var connAfter atomic.Int64
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) {
		connAfter.Store(int64(time.Since(start)))
	}}
	rctx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), m.opts.Timeout)
	defer cancel()

	err := m.get(rctx)
	end := time.Now()
	switch {
	case ctx.Err() != nil:
		return // stopping: the cut-off probe says nothing about the peer
	case errors.Is(rctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("GET %s: no answer within %v", m.target, m.opts.Timeout)
	}
	if err != nil {
		m.losses.Add(end, end.Sub(start))
		m.mu.Lock()
		m.lastErr, m.lastErrAt = err.Error(), end
		m.mu.Unlock()
		return
	}
	rtt := end.Sub(start) - time.Duration(connAfter.Load())
	m.rtt.Add(end, rtt)
	m.mu.Lock()
	m.lastSuccess = end
	m.mu.Unlock()
	if m.opts.Observe != nil {
		m.opts.Observe(m.name, rtt)
	}
}

// get GETs the target and reads the whole answer, so the connection goes
// back to the pool for the next probe.
func (m *member) get(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.target, nil)
	if err != nil {
		return fmt.Errorf("probe request: %w", err)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return err // a *url.Error: it names the method and URL
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)); err != nil {
		return fmt.Errorf("GET %s: read answer: %w", m.target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", m.target, resp.Status)
	}
	return nil
}

func (m *member) setInFlight(since time.Time) {
	m.mu.Lock()
	m.inFlightSince = since
	m.mu.Unlock()
}

func (m *member) stats(now time.Time) PeerStats {
	m.mu.Lock()
	s := PeerStats{
		URL:         m.target,
		LastError:   m.lastErr,
		LastErrorAt: m.lastErrAt,
		LastSuccess: m.lastSuccess,
	}
	if !m.inFlightSince.IsZero() {
		s.InFlight = max(0, now.Sub(m.inFlightSince))
	}
	m.mu.Unlock()
	s.RTT = m.rtt.Stats(now)
	s.Losses = m.losses.Stats(now).Count
	return s
}
