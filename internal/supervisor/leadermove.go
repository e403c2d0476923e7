package supervisor

import (
	"cmp"
	"context"
	"crypto/tls"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	etcdapi "go.etcd.io/etcd/server/v3/etcdserver/api"
	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
	"github.com/etcdvisor/etcdvisor/internal/fence"
	"github.com/etcdvisor/etcdvisor/internal/health"
	"github.com/etcdvisor/etcdvisor/internal/raftpeer"
)

// leaderMover hands leadership away from this member while it leads and
// is critical. etcd keeps a leader whose disk is slow as long as it still
// sends heartbeats, and the whole cluster's writes wait on that disk;
// moving the leadership early ends that, before the followers' election
// timers fire (an election stops writes for longer than a move does).
type leaderMover struct {
	s        *Supervisor
	lg       *zap.Logger
	interval time.Duration // at most one move per interval
	enabled  bool
	gate     *fence.Gate
	onMoved  func() // after a move succeeded
	// moveLeader asks this member's raft to hand leadership over (etcd's
	// MoveLeader).
	moveLeader func(ctx context.Context, to uint64) error
	// self and peerTLS send the handover straight to the target (see
	// transfer); without self, raft's own handover alone runs.
	self    handoverSelf
	peerTLS *tls.Config // this member's peer client TLS; nil for http

	mu     sync.Mutex
	moving bool
	last   time.Time
}

// maybeMove starts a move if this member leads and the damping allows it.
// It never blocks the watch: the move runs on its own goroutine.
//
// Preconditions, each logged when it declines:
//   - leader-move is on;
//   - this member leads (etcd's own in-process is-leader gauge: asking the
//     member itself could wait on the very disk that is slow);
//   - no move is running, and the last one was at least interval ago.
func (m *leaderMover) maybeMove(r health.Report) {
	if !m.enabled || !r.Figures.IsLeader {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.moving {
		return
	}
	if !m.last.IsZero() && r.At.Sub(m.last) < m.interval {
		m.lg.Debug("not moving leadership: moved recently", zap.Time("last-move", m.last), zap.Duration("leader-move-interval", m.interval))
		return
	}
	m.moving = true
	go func() {
		moved := m.move(r)
		m.mu.Lock()
		m.moving = false
		if moved {
			m.last = time.Now()
		}
		m.mu.Unlock()
	}()
}

// move picks the target and calls MoveLeader on this member. The target is
// a voting member that answers this member's peer probes within the RTT
// budget and, asked over its client URL, knows the leader; of those, the
// one with the highest raft index, leaving out members whose etcdvisor
// publishes that it is critical (raft itself then waits for it to match
// the leader's log before it hands over).
func (m *leaderMover) move(r health.Report) bool {
	s := m.s
	reason := "critical"
	if len(r.Reasons) > 0 {
		reason = r.Reasons[0].Signal
	}
	st := s.lastStatus()
	election := s.cfg.Etcd.ElectionTimeout.D()
	tlsCfg, err := s.clientTLS()
	if err != nil {
		m.lg.Warn("not moving leadership: no client TLS config", zap.Error(err))
		return false
	}
	// Client requests wait from here until the move is over (raft would
	// drop their proposals during it, or they would queue behind this
	// member's slow disk before it), and until onMoved has closed the
	// fence, which then refuses them.
	end := m.gate.BeginMove()
	defer end()
	rtt := r.PeerStats()
	var candidates []api.Member
	for _, mb := range st.Members {
		if mb.ID == st.MemberID || mb.IsLearner || len(mb.ClientURLs) == 0 {
			continue
		}
		ps, ok := rtt[mb.Name]
		if !ok || ps.LastSuccess.IsZero() || r.At.Sub(ps.LastSuccess) > 2*election || max(ps.RTT.P99, ps.InFlight) >= s.cfg.Etcd.HeartbeatInterval.D() {
			continue
		}
		candidates = append(candidates, mb)
	}
	if len(candidates) == 0 {
		m.lg.Warn("this member leads and is critical, but no other voter answers its peer probes quickly; keeping leadership",
			zap.Strings("reasons", reasonTexts(r.Reasons)))
		s.metrics.Health.LeaderMoveFailed("no-candidate")
		return false
	}
	// Ask each candidate how far it is (a healthy member answers at once),
	// and read what peers publish: never hand leadership to a member that
	// says it is critical (no record: judged from this side alone).
	recs := s.registryRecent(s.cfg.Etcd.HeartbeatInterval.D())
	ctx, cancel := context.WithTimeout(context.Background(), election)
	probes := make([]api.MemberHealth, len(candidates))
	var wg sync.WaitGroup
	for i, c := range candidates {
		wg.Go(func() { probes[i] = cluster.ProbeMember(ctx, m.lg, tlsCfg, c) })
	}
	wg.Wait()
	cancel()
	sayCritical := 0
	probes = slices.DeleteFunc(probes, func(h api.MemberHealth) bool {
		if rec, ok := recs[h.Name]; ok && rec.Health == health.Critical.String() {
			sayCritical++
			return true
		}
		return !h.Healthy
	})
	if len(probes) == 0 {
		m.lg.Warn("this member leads and is critical, but no other voter can take over (each says it is critical too, or did not answer a status request in time); keeping leadership",
			zap.Int("voters-saying-critical", sayCritical), zap.Strings("reasons", reasonTexts(r.Reasons)))
		s.metrics.Health.LeaderMoveFailed("no-healthy-candidate")
		return false
	}
	// The most caught-up first: raft's own handover goes to the target,
	// and the direct one falls back on the runner-up (see transfer).
	slices.SortStableFunc(probes, func(a, b api.MemberHealth) int { return cmp.Compare(b.RaftIndex, a.RaftIndex) })
	targets := make([]target, 0, len(probes))
	for _, p := range probes {
		id, err := strconv.ParseUint(p.ID, 16, 64)
		if err != nil {
			m.lg.Warn("leadership move: skipping a member with a bad ID", zap.String("member", p.Name), zap.String("id", p.ID))
			continue
		}
		targets = append(targets, target{p.Member, id})
	}
	if len(targets) == 0 {
		return false
	}

	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 3*election)
	defer cancel()
	self, _ := strconv.ParseUint(st.MemberID, 16, 64)
	lead, err := m.transfer(ctx, tlsCfg, self, targets)
	if err != nil {
		m.lg.Warn("moving leadership failed", zap.String("to", targets[0].Name), zap.String("reason", reason), zap.Error(err))
		s.metrics.Health.LeaderMoveFailed("move-failed")
		return false
	}
	m.lg.Warn("moved leadership off this critical member",
		zap.String("to", lead.Name), zap.String("to-id", lead.ID), zap.String("reason", reason),
		zap.Strings("reasons", reasonTexts(r.Reasons)), zap.Duration("took", time.Since(start)))
	s.metrics.Health.LeaderMoved(reason)
	if m.onMoved != nil {
		m.onMoved()
	}
	return true
}

// handoverSelf is what a handover names of this member; *etcdserver.EtcdServer
// has it.
type handoverSelf interface {
	Cluster() etcdapi.Cluster
	MemberID() types.ID
	// Term is the term of the last entry this member applied: its raft
	// term once it has applied an entry of its own leadership.
	Term() uint64
}

// target is a member leadership may go to, with its ID as a number.
type target struct {
	api.Member
	id uint64
}

// transfer hands leadership to ts[0], the most caught-up candidate, and
// returns the member that leads once one other than this member (self)
// says so.
//
// It asks this member's raft (MoveLeader), which then sends the target
// MsgTimeoutNow, and sends that message itself too, straight to the
// target's peer URL (package raftpeer). raft sends nothing between two of
// its WAL fsyncs, so on a slow disk its own message leaves one or two slow
// fsyncs later, while every client request waits on this member; the
// direct one arrives at once. The price: writes this member has taken and
// not yet sent are lost instead of handed over, and the fence gives them
// up (their clients are told they timed out). If the direct message does
// not arrive, raft's own still does.
//
// raft's own handover waits until the target holds the leader's last
// entry; the direct one cannot know. A target that misses an entry
// another voter holds (one the leader sent a moment before) loses its
// election, and leaves every member a term later and without a leader.
// So if the target does not lead within handoverWait, the runner-up,
// which then holds at least what the target holds, is told to campaign
// in that later term.
//
// MoveLeader alone returns only once this member has seen the new leader,
// again a slow fsync later; the word of any candidate that knows a new
// leader ends the wait.
func (m *leaderMover) transfer(ctx context.Context, tlsCfg *tls.Config, self uint64, ts []target) (api.Member, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	to := ts[0]
	moved := make(chan error, 1)
	go func() { moved <- m.moveLeader(ctx, to.id) }()
	leads := make(chan uint64, len(ts))
	for _, t := range ts {
		go func() {
			if lead := waitLeader(ctx, m.lg, tlsCfg, t.Member, self); lead != 0 {
				leads <- lead
			}
		}()
	}
	if m.self != nil {
		term := m.self.Term()
		h := raftpeer.Handover{Cluster: uint64(m.self.Cluster().ID()), From: self, To: to.id, Term: term}
		go func() {
			m.handOver(ctx, to.Member, h)
			if len(ts) < 2 {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(handoverWait):
			}
			m.lg.Info("the handover target does not lead yet; telling the runner-up to campaign", zap.String("target", to.Name), zap.String("runner-up", ts[1].Name))
			h.To, h.Term = ts[1].id, term+1
			m.handOver(ctx, ts[1].Member, h)
		}()
	}
	var moveErr error
	for {
		select {
		case err := <-moved:
			if err == nil {
				return to.Member, nil
			}
			// The direct handover may have worked all the same (MoveLeader
			// fails once this member no longer leads): wait for a word.
			moveErr, moved = err, nil
		case lead := <-leads:
			for _, t := range ts {
				if t.id == lead {
					return t.Member, nil
				}
			}
			return api.Member{ID: strconv.FormatUint(lead, 16)}, nil
		case <-ctx.Done():
			return api.Member{}, cmp.Or(moveErr, ctx.Err())
		}
	}
}

// handoverWait is how long a target told to campaign may take to win: a
// vote round on healthy members takes a round trip and an fsync.
const handoverWait = 200 * time.Millisecond

// handOver sends h to the member, logging a failure: raft's own handover
// still runs.
func (m *leaderMover) handOver(ctx context.Context, to api.Member, h raftpeer.Handover) {
	if len(to.PeerURLs) == 0 {
		return
	}
	if err := raftpeer.SendTimeoutNow(ctx, m.peerTLS, to.PeerURLs[0], h); err != nil && ctx.Err() == nil {
		m.lg.Info("handover message not delivered; raft's own follows", zap.String("to", to.Name), zap.Error(err))
	}
}

// waitLeader asks the member for its status until it names a leader other
// than self, and returns that leader; 0 if ctx ended first.
func waitLeader(ctx context.Context, lg *zap.Logger, tlsCfg *tls.Config, m api.Member, self uint64) uint64 {
	cli, err := cluster.MemberClient(ctx, lg, tlsCfg, m)
	if err != nil {
		return 0
	}
	defer cli.Close()
	for {
		resp, err := cli.Status(ctx, m.ClientURLs[0])
		if err == nil && resp.Leader != 0 && resp.Leader != self {
			return resp.Leader
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(leadPoll):
		}
	}
}

// leadPoll is how often waitLeader asks; a status call to a healthy member
// takes about a millisecond.
const leadPoll = 10 * time.Millisecond
