// Package peer measures the round-trip time to each peer member at
// sub-second resolution. etcd's own etcd_network_peer_round_trip_time_seconds
// is refreshed only every 30 s: far too late to act on a link that turned
// slow before the next election timeout.
//
// Each peer is probed with an HTTP GET of ProbePath on its peer URL, over a
// keep-alive connection of its own, so that after the first request a
// sample is the network plus the peer's HTTP handling, not TCP or TLS setup.
package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/health/window"
)

// ProbePath is what every probe GETs. It is rafthttp.ProbingPrefix, the
// handler etcd's own peer prober uses: it answers {"OK":true,"Now":...}
// from memory. /version, also served on the peer listener, is not as
// cheap: in etcd v3.7.3 it reads the storage version from the backend
// under the read-transaction lock, which a backend commit holds across
// bbolt's fsync and a defragmentation holds throughout, so a slow disk
// would show up as a slow network.
const ProbePath = "/raft/probing"

// Defaults for the zero fields of Options.
const (
	DefaultInterval = 200 * time.Millisecond
	DefaultTimeout  = time.Second
	DefaultSpan     = 10 * time.Second
)

// Options configure a Prober. Zero durations take the defaults above.
type Options struct {
	// Interval is the time between the starts of two probes of one peer.
	// A probe still waiting when the next is due delays it: there is never
	// more than one request in flight per peer.
	Interval time.Duration
	// Timeout is how long a probe waits for its answer before it counts as
	// a loss. It may exceed Interval.
	Timeout time.Duration
	// Span is how far back Stats looks.
	Span time.Duration
	// TLS is the client side of the peer transport: the member's peer
	// certificate as the client certificate and the peer trusted CA as
	// RootCAs. Nil means plain http.
	TLS *tls.Config
	// Observe, if set, receives every successful sample, e.g. for a
	// histogram. It is called from each peer's own goroutine, so it must be
	// safe for concurrent use and should not block.
	Observe func(peer string, rtt time.Duration)
}

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Span <= 0 {
		o.Span = DefaultSpan
	}
	return o
}

// PeerStats is what one peer's probes showed over the last Span.
type PeerStats struct {
	// URL is what is probed: the peer's first peer URL plus ProbePath.
	URL string
	// RTT summarises the successful probes.
	RTT window.Stats
	// Losses counts the probes that failed or got no answer within Timeout.
	Losses int
	// LastError is the most recent failure, however old; LastErrorAt says
	// when it happened, so it can be told apart from a current one.
	LastError   string
	LastErrorAt time.Time
	// LastSuccess is when the most recent successful probe ended.
	LastSuccess time.Time
	// InFlight is how long the current probe has been waiting, zero when
	// none is. A peer that stopped answering shows here before Timeout
	// turns the probe into a loss.
	InFlight time.Duration
}

// Prober probes every peer it is given. Its methods are safe for concurrent
// use.
type Prober struct {
	opts Options

	mu      sync.Mutex
	members map[string]*member
	runCtx  context.Context // set while Run runs
	wg      sync.WaitGroup  // the members' probe loops
}

// New returns a prober with no peers; give it some with SetPeers.
func New(opts Options) *Prober {
	return &Prober{opts: opts.withDefaults(), members: map[string]*member{}}
}

// SetPeers replaces the set of probed peers: member name to its peer URLs,
// of which the first is probed. Call it with the other members whenever the
// member list changes. A removed peer is forgotten and its connection
// closed; a peer whose first URL changed starts over with empty statistics.
func (p *Prober) SetPeers(peers map[string][]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, m := range p.members {
		if urls, ok := peers[name]; !ok || firstURL(urls) != m.rawURL {
			m.stop()
			delete(p.members, name)
		}
	}
	for name, urls := range peers {
		if _, ok := p.members[name]; ok {
			continue
		}
		m := newMember(name, firstURL(urls), p.opts)
		p.members[name] = m
		if p.runCtx != nil {
			p.startLocked(m)
		}
	}
}

func firstURL(urls []string) string {
	if len(urls) == 0 {
		return ""
	}
	return urls[0]
}

// Run probes the peers until ctx is done, then waits for every probe to
// end. Stopping is not a failure: it returns nil then, and an error only
// if it was already running.
func (p *Prober) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.runCtx != nil {
		p.mu.Unlock()
		return errors.New("peer prober: already running")
	}
	p.runCtx = ctx
	for _, m := range p.members {
		p.startLocked(m)
	}
	p.mu.Unlock()

	<-ctx.Done()
	// Every loop runs under a child of ctx, so all are ending already.
	// Clearing runCtx under the lock orders any SetPeers racing with the
	// shutdown: it either started its loop before this (and Wait sees it)
	// or starts none.
	p.mu.Lock()
	p.runCtx = nil
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// startLocked starts m's probe loop under the running context. p.mu must
// be held.
func (p *Prober) startLocked(m *member) {
	if m.target == "" {
		return // an unusable URL: its LastError says why
	}
	ctx, cancel := context.WithCancel(p.runCtx)
	m.cancel = cancel
	p.wg.Go(func() { m.loop(ctx) })
}

// Stats reports every current peer's probes over (now-Span, now].
func (p *Prober) Stats(now time.Time) map[string]PeerStats {
	p.mu.Lock()
	members := make([]*member, 0, len(p.members))
	for _, m := range p.members {
		members = append(members, m)
	}
	p.mu.Unlock()

	out := make(map[string]PeerStats, len(members))
	for _, m := range members {
		out[m.name] = m.stats(now)
	}
	return out
}
