package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
)

// abandoned tracks idle learners nobody is joining. A live joiner holds the
// membership lock from adding its learner to promoting it (and takes it
// again within seconds when it restarts), so a learner that stays while
// the lock is free was left by a joiner that died for good. It does not
// vote, so it lowers no quorum, but it blocks every later join ("one join
// at a time") and every rolling restart until it goes.
type abandoned struct {
	since map[string]time.Time // learner ID: present with the lock free since
}

// update returns the learners abandoned for at least after; lockFree says
// whether anyone holds the membership lock now.
func (a *abandoned) update(now time.Time, members []api.Member, lockFree bool, after time.Duration) []string {
	if a.since == nil {
		a.since = map[string]time.Time{}
	}
	if !lockFree {
		clear(a.since)
		return nil
	}
	var out []string
	present := map[string]bool{}
	for _, m := range members {
		if !m.IsLearner {
			continue
		}
		present[m.ID] = true
		since, ok := a.since[m.ID]
		if !ok {
			a.since[m.ID] = now
			continue
		}
		if now.Sub(since) >= after {
			out = append(out, m.ID)
		}
	}
	for id := range a.since {
		if !present[id] {
			delete(a.since, id)
		}
	}
	return out
}

// checkAbandoned runs on the leader's loop tick, when
// membership.remove-abandoned-learner-after is set.
func (s *Supervisor) checkAbandoned(st api.Status) {
	after := s.cfg.Membership.RemoveAbandonedLearnerAfter.D()
	if after <= 0 || !st.IsLeader || st.Error != "" {
		return
	}
	// Only a learner that never started, or whose member does not answer,
	// counts: one an operator added by hand and is catching up runs.
	var idle []api.Member
	s.mu.Lock()
	for _, m := range st.Members {
		if m.IsLearner && (m.Name == "" || s.unreachableFor[m.Name] > 0) {
			idle = append(idle, m)
		}
	}
	s.mu.Unlock()
	// The lock is read only while some learner is idle: most ticks have
	// none, and then there is nothing to track.
	lockFree := false
	if len(idle) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		h, err := cluster.LockHolder(ctx, s.member.Client())
		cancel()
		if err != nil {
			return
		}
		lockFree = h == nil
	}
	ids := s.abandon.update(time.Now(), idle, lockFree, after)
	if len(ids) == 0 || !s.removing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.removing.Store(false)
		if err := s.removeAbandoned(ids[0], after); err != nil {
			s.warnOnce("abandoned:"+ids[0]+":"+err.Error(), "not removing the abandoned learner", zap.String("learner-id", ids[0]), zap.Error(err))
		}
	}()
}

// removeAbandoned removes the learner under the lock and marks its join
// aborted in the journal, saying why.
func (s *Supervisor) removeAbandoned(id string, after time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := s.changer()
	if err != nil {
		return err
	}
	lock, err := s.lockFor(ctx, "removal of abandoned learner "+id)
	if err != nil {
		return err
	}
	defer lock.Release()
	if _, err := ch.Remove(ctx, lock, id, false); err != nil {
		return err
	}
	why := fmt.Sprintf("abandoned: the learner stayed %s with no joiner holding the membership lock; removed by the leader's etcdvisor (%s)", after, s.cfg.Etcd.Name)
	s.lg.Warn("removed an abandoned learner; start its host's etcdvisor again to retry the join", zap.String("learner-id", id), zap.Duration("after", after))
	joins, err := cluster.Joins(ctx, s.member.Client())
	if err != nil {
		return nil // removed; the journal only misses the reason
	}
	for _, rec := range joins {
		if rec.LearnerID != id || rec.Step == cluster.StepPromoted || rec.Step == cluster.StepAborted {
			continue
		}
		rec.Step, rec.Error, rec.UpdatedAt = cluster.StepAborted, why, time.Now().UTC()
		if b, err := json.Marshal(rec); err == nil {
			lock.Put(ctx, cluster.JoinsPrefix+rec.Name, string(b))
		}
	}
	return nil
}
