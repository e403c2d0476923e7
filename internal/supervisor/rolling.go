package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/cluster"
)

// ErrRestart ends the daemon so that it is started again: this member's
// turn in a rolling restart. The command exits with ExitRestart, which the
// systemd unit restarts on; that is also how a new binary (and the etcd
// embedded in it) rolls out, one host at a time.
var ErrRestart = errors.New("restarting for a rolling restart")

// ExitRestart is the exit status for ErrRestart (EX_TEMPFAIL).
const ExitRestart = 75

// roller takes this member's turns in rolling operations.
type roller struct {
	s      *Supervisor
	lg     *zap.Logger
	waitOn string // the reason the last turn waited, logged once
}

// run checks the rolling operation every second once the member serves.
func (rl *roller) run(ctx context.Context, ready <-chan struct{}) error {
	select {
	case <-ready:
	case <-ctx.Done():
		return nil
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		// A step reads through the in-process client, which a hung disk
		// blocks beyond ctx's reach; the actor still stops when told.
		res := make(chan error, 1)
		go func() { res <- rl.step(ctx) }()
		var err error
		select {
		case <-ctx.Done():
			return nil
		case err = <-res:
		}
		switch {
		case errors.Is(err, ErrRestart):
			return err
		case err != nil && ctx.Err() == nil:
			rl.waiting(err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (rl *roller) waiting(why string) {
	if why != rl.waitOn {
		rl.waitOn = why
		rl.lg.Info("rolling restart: this member's turn waits", zap.String("reason", why))
	}
}

// step does at most one thing: record this member's restart as done, or
// take its turn.
func (rl *roller) step(ctx context.Context) error {
	s := rl.s
	me := s.cfg.Etcd.Name
	r, err := cluster.ReadRolling(ctx, s.member.Client())
	if err != nil || r == nil || r.Phase != cluster.RollingRunning {
		return err
	}
	switch {
	case r.Current == me && r.CurrentRun != s.run:
		// This is the new incarnation, and it serves.
		return rl.update(ctx, "rolling restart: "+me+" is back", func(r *cluster.Rolling) error {
			if r.Current != me {
				return cluster.ErrRollingChanged
			}
			r.Done, r.Current, r.CurrentRun = append(r.Done, me), "", ""
			if r.Next() == "" {
				r.Phase = cluster.RollingDone
			}
			rl.lg.Info("rolling restart: this member restarted and serves", zap.Strings("done", r.Done), zap.String("next", r.Next()))
			return nil
		})
	case r.Current != "" || r.Next() != me:
		return nil
	}

	// This member's turn: only with the whole cluster healthy, so a restart
	// never takes down a second member while one is already missing.
	ch, err := s.changer()
	if err != nil {
		return err
	}
	v, err := ch.Observe(ctx)
	if err != nil {
		return err
	}
	if why := unhealthy(v); why != "" {
		return errors.New(why)
	}
	lock, err := s.lockFor(ctx, "rolling restart of "+me)
	if err != nil {
		return err
	}
	defer lock.Release()
	if err := rl.write(ctx, lock, func(r *cluster.Rolling) error {
		if r.Phase != cluster.RollingRunning || r.Current != "" || r.Next() != me {
			return cluster.ErrRollingChanged
		}
		r.Current, r.CurrentRun, r.CurrentFrom = me, s.run, time.Now().UTC()
		return nil
	}); err != nil {
		return err
	}
	if self, ok := v.Find(me); ok && self.IsLeader {
		// etcd's own stop hands leadership over too; moving it first, to
		// the most caught-up healthy voter, keeps the stop short.
		if err := ch.MoveLeaderOff(ctx, v, self); err != nil {
			rl.lg.Warn("rolling restart: could not move leadership first; etcd's stop will", zap.Error(err))
		}
	}
	rl.lg.Info("rolling restart: this member's turn; restarting", zap.Strings("done", r.Done))
	return ErrRestart
}

// update takes the lock and applies change to the operation.
func (rl *roller) update(ctx context.Context, what string, change func(*cluster.Rolling) error) error {
	lock, err := rl.s.lockFor(ctx, what)
	if err != nil {
		return err
	}
	defer lock.Release()
	return rl.write(ctx, lock, change)
}

// write re-reads the operation under the held lock, applies change and
// writes it back, conditional on nobody having written in between.
func (rl *roller) write(ctx context.Context, lock *cluster.Lock, change func(*cluster.Rolling) error) error {
	r, err := cluster.ReadRolling(ctx, rl.s.member.Client())
	if err != nil {
		return err
	}
	if r == nil {
		return cluster.ErrRollingChanged
	}
	if err := change(r); err != nil {
		return err
	}
	return cluster.WriteRolling(ctx, lock, r)
}

// unhealthy says why the cluster is not fit for the next step; "" if it is.
func unhealthy(v cluster.View) string {
	if v.LeaderID == 0 {
		return "the cluster has no leader"
	}
	var down []string
	for _, m := range v.Members {
		if !m.Healthy {
			down = append(down, fmt.Sprintf("%s: %s", m.Name, m.Error))
		}
	}
	if len(down) > 0 {
		return "waiting for every member to be healthy: " + strings.Join(down, "; ")
	}
	return ""
}

// startRolling is `etcdvisor cluster rolling-restart`: under the lock, with
// a healthy cluster and no operation running, it writes the plan; the
// etcdvisors then take their turns.
func (s *Supervisor) startRolling(ctx context.Context, who string) (cluster.Rolling, error) {
	ch, err := s.changer()
	if err != nil {
		return cluster.Rolling{}, err
	}
	lock, err := s.lockFor(ctx, "start of a rolling restart")
	if err != nil {
		return cluster.Rolling{}, err
	}
	defer lock.Release()
	cur, err := cluster.ReadRolling(ctx, s.member.Client())
	if err != nil {
		return cluster.Rolling{}, err
	}
	if cur != nil && cur.Phase == cluster.RollingRunning {
		return *cur, fmt.Errorf("a rolling restart is running already (started %s by %s; done: %s; restarting: %s); wait for it or abort it (--abort)",
			cur.StartedAt.Format(time.RFC3339), cur.RequestedBy, strings.Join(cur.Done, ", "), orNone(cur.Current))
	}
	v, err := ch.Observe(ctx)
	if err != nil {
		return cluster.Rolling{}, err
	}
	if why := unhealthy(v); why != "" {
		return cluster.Rolling{}, fmt.Errorf("refusing to start a rolling restart: %s", why)
	}
	order, err := cluster.RestartOrder(v)
	if err != nil {
		return cluster.Rolling{}, err
	}
	now := time.Now().UTC()
	r := cluster.Rolling{ID: now.Format("20060102T150405Z"), Order: order, Done: []string{}, Phase: cluster.RollingRunning, RequestedBy: who, StartedAt: now}
	if cur != nil {
		r.Revision = cur.Revision
	}
	if err := cluster.WriteRolling(ctx, lock, &r); err != nil {
		return r, err
	}
	s.lg.Info("rolling restart started", zap.Strings("order", order), zap.String("requested-by", who))
	return r, nil
}

// abortRolling stops a running operation after the step in progress.
func (s *Supervisor) abortRolling(ctx context.Context, who string) (cluster.Rolling, error) {
	lock, err := s.lockFor(ctx, "abort of a rolling restart")
	if err != nil {
		return cluster.Rolling{}, err
	}
	defer lock.Release()
	r, err := cluster.ReadRolling(ctx, s.member.Client())
	if err != nil {
		return cluster.Rolling{}, err
	}
	if r == nil || r.Phase != cluster.RollingRunning {
		return cluster.Rolling{}, errors.New("no rolling restart is running")
	}
	r.Phase, r.Error = cluster.RollingAborted, "aborted by "+who
	if err := cluster.WriteRolling(ctx, lock, r); err != nil {
		return *r, err
	}
	s.lg.Warn("rolling restart aborted", zap.String("by", who), zap.Strings("done", r.Done), zap.String("restarting", r.Current))
	return *r, nil
}

// clusterStatus is `etcdvisor cluster status`: the operations under the
// reserved prefix and who holds the lock.
func (s *Supervisor) clusterStatus(ctx context.Context) (cluster.Status, error) {
	cli := s.member.Client()
	if cli == nil {
		return cluster.Status{}, errors.New("the etcd member is not running")
	}
	var out cluster.Status
	var err error
	if out.Rolling, err = cluster.ReadRolling(ctx, cli); err != nil {
		return out, err
	}
	if out.Joins, err = cluster.Joins(ctx, cli); err != nil {
		return out, err
	}
	slices.SortFunc(out.Joins, func(a, b cluster.JoinRecord) int { return a.StartedAt.Compare(b.StartedAt) })
	out.Lock, err = cluster.LockHolder(ctx, cli)
	return out, err
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
