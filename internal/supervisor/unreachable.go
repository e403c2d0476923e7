package supervisor

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
	"github.com/etcdvisor/etcdvisor/internal/health/peer"
)

// unreachable tracks members that look failed: no live etcdvisor in the
// registry (its lease expired) and no answer on the peer URL. Either alone
// is not enough: a member whose etcdvisor cannot renew its lease (a busy
// leader election) may still answer, and a member behind a slow link may
// miss probes while its etcdvisor is alive. Removal stays the operator's
// decision; this reports it.
type unreachable struct {
	since map[string]time.Time // member name: unreachable since
}

// grace is how long a peer probe may go unanswered before it counts: a
// few election timeouts, so a leader election or a restart is not a
// failure.
func unreachableGrace(election time.Duration) time.Duration { return 3 * election }

// update judges every other member now and returns how long each has been
// unreachable (0: reachable), logging each change once.
func (u *unreachable) update(now time.Time, lg *zap.Logger, self string, members []api.Member, recs map[string]cluster.Record, peers map[string]peer.PeerStats, grace time.Duration) map[string]time.Duration {
	if u.since == nil {
		u.since = map[string]time.Time{}
	}
	out := map[string]time.Duration{}
	for _, m := range members {
		if m.Name == "" || m.Name == self {
			continue
		}
		_, registered := recs[m.Name]
		ps, probed := peers[m.Name]
		answers := probed && !ps.LastSuccess.IsZero() && now.Sub(ps.LastSuccess) < grace
		since, was := u.since[m.Name]
		switch {
		case registered || answers:
			if was {
				lg.Info("member reachable again", zap.String("member", m.Name), zap.Duration("was-unreachable", now.Sub(since)))
				delete(u.since, m.Name)
			}
			out[m.Name] = 0
		case !probed:
			out[m.Name] = 0 // not probed yet: no verdict
		default:
			if !was {
				since = ps.LastSuccess
				if since.IsZero() {
					since = now
				}
				u.since[m.Name] = since
				lg.Warn("member unreachable: no live etcdvisor in the registry and no answer on its peer URL; replace it if it does not come back (etcdvisor member join --replaces)",
					zap.String("member", m.Name), zap.String("id", m.ID), zap.Time("last-answer", ps.LastSuccess))
			}
			out[m.Name] = now.Sub(since)
		}
	}
	for name := range u.since {
		if _, ok := out[name]; !ok {
			delete(u.since, name) // removed from the cluster
		}
	}
	return out
}

// checkUnreachable runs on every loop tick once the member serves.
func (s *Supervisor) checkUnreachable(st api.Status) {
	if st.Error != "" || s.watch == nil {
		return
	}
	recs, err := s.registryNow(time.Second)
	if err != nil {
		return
	}
	got := s.unreach.update(time.Now(), s.lg, s.cfg.Etcd.Name, st.Members, recs, s.watch.report().PeerStats(), unreachableGrace(s.cfg.Etcd.ElectionTimeout.D()))
	s.metrics.SetUnreachable(got)
	s.mu.Lock()
	s.unreachableFor = got
	s.mu.Unlock()
	if after := s.cfg.Membership.RemoveUnreachableAfter.D(); after > 0 && st.IsLeader {
		for name, d := range got {
			if d >= after {
				s.removeUnreachable(name, d)
				break // one change at a time
			}
		}
	}
}

// removeUnreachable removes a member unreachable past
// membership.remove-unreachable-after. Only the leader's etcdvisor acts, so
// the members do not all try at once; it does so under the lock and the
// safety rules like an operator's removal (never when the healthy voters
// left would not be a quorum), and off the loop, which must keep ticking.
func (s *Supervisor) removeUnreachable(name string, d time.Duration) {
	if !s.removing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.removing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		got, err := s.removeMember(ctx, api.RemoveRequest{Name: name})
		if err != nil {
			s.warnOnce("auto-remove:"+name+":"+err.Error(), "not removing the unreachable member", zap.String("member", name), zap.Duration("unreachable-for", d), zap.Error(err))
			return
		}
		s.lg.Warn("removed the unreachable member (membership.remove-unreachable-after); replace it with a new host (etcdvisor member join)",
			zap.String("member", got.Name), zap.String("id", got.ID), zap.Duration("unreachable-for", d))
	}()
}
