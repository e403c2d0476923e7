package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

// Changer makes membership changes through a client of the cluster. Every
// method takes the held membership lock: the caller has checked the safety
// rules on a view taken under it, and each change is one raft conf change.
type Changer struct {
	Client *clientv3.Client
	TLS    *tls.Config // to dial members' client URLs; nil for http
	Log    *zap.Logger
}

// Observe is the cluster as it is now.
func (c *Changer) Observe(ctx context.Context) (View, error) {
	return Observe(ctx, c.Client, c.TLS, c.Log)
}

// Remove removes the member after CheckRemove allowed it on a fresh view.
// A leader is not removed while it leads: leadership moves to the most
// caught-up healthy voter first, because a leader that applies its own
// removal steps down before the others learn the change is committed
// (in a two-member cluster that leaves the survivor without a quorum).
func (c *Changer) Remove(ctx context.Context, lock *Lock, nameOrID string, force bool) (api.MemberHealth, error) {
	v, err := c.Observe(ctx)
	if err != nil {
		return api.MemberHealth{}, err
	}
	target, err := CheckRemove(v, nameOrID, force)
	if err != nil {
		return target, err
	}
	if target.IsLeader {
		if err := c.MoveLeaderOff(ctx, v, target); err != nil {
			return target, err
		}
	}
	id, _ := ParseID(target.ID)
	if err := lock.Check(ctx); err != nil {
		return target, err
	}
	if err := retryUnhealthy(ctx, func() error { _, err := c.Client.MemberRemove(ctx, id); return err }); err != nil {
		return target, fmt.Errorf("remove member %s (%s): %w", displayName(target), target.ID, err)
	}
	c.Log.Info("removed member", zap.String("member", displayName(target)), zap.String("id", target.ID), zap.Bool("was-healthy", target.Healthy))
	return target, nil
}

// MoveLeaderOff hands leadership from the leader to the healthy voter with
// the highest raft index, asking the leader itself (only it can).
func (c *Changer) MoveLeaderOff(ctx context.Context, v View, leader api.MemberHealth) error {
	var to api.MemberHealth
	for _, m := range v.Voters() {
		if m.ID != leader.ID && m.Healthy && m.RaftIndex >= to.RaftIndex {
			to = m
		}
	}
	if to.ID == "" {
		return fmt.Errorf("no other healthy voter can take over from the leader %s", displayName(leader))
	}
	cli, err := c.Dial(ctx, leader)
	if err != nil {
		return err
	}
	defer cli.Close()
	id, _ := ParseID(to.ID)
	if _, err := cli.MoveLeader(ctx, id); err != nil {
		return fmt.Errorf("move leadership from %s to %s before removing it: %w", displayName(leader), displayName(to), err)
	}
	c.Log.Info("moved leadership off the member to be removed", zap.String("from", displayName(leader)), zap.String("to", displayName(to)))
	return nil
}

// Dial opens a client to one member only.
func (c *Changer) Dial(ctx context.Context, m api.MemberHealth) (*clientv3.Client, error) {
	if len(m.ClientURLs) == 0 {
		return nil, fmt.Errorf("member %s has no client URL", displayName(m))
	}
	var cfg *tls.Config
	if strings.HasPrefix(m.ClientURLs[0], "https://") {
		cfg = c.TLS
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: m.ClientURLs[:1], TLS: cfg, DialTimeout: ProbeTimeout, Context: ctx,
		Logger: c.Log.Named("dial").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to member %s: %w", displayName(m), err)
	}
	return cli, nil
}

// AddLearner adds a member as a learner (never as a voter: a voter without
// the data counts towards the quorum while it cannot vote in time). It
// returns the new member's ID and the member list that includes it.
func (c *Changer) AddLearner(ctx context.Context, lock *Lock, peerURLs []string) (uint64, []*Member, error) {
	if err := lock.Check(ctx); err != nil {
		return 0, nil, err
	}
	var resp *clientv3.MemberAddResponse
	err := retryUnhealthy(ctx, func() (err error) {
		resp, err = c.Client.MemberAddAsLearner(ctx, peerURLs)
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("add learner with peer URLs %s: %w", strings.Join(peerURLs, ","), err)
	}
	c.Log.Info("added learner", zap.String("id", HexID(resp.Member.ID)), zap.Strings("peer-urls", peerURLs))
	return resp.Member.ID, resp.Members, nil
}

// Member is etcd's member record.
type Member = etcdserverpb.Member

// InitialCluster is the initial-cluster value a new member named self
// starts with: every started member by name, and self by its peer URLs.
// A member added but never started has no name yet; it cannot be listed
// (etcd would refuse the mismatch), and a join is refused while one exists.
func InitialCluster(members []*Member, selfID uint64, self string) string {
	var parts []string
	for _, m := range members {
		name := m.Name
		if m.ID == selfID {
			name = self
		}
		if name == "" {
			continue
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, name+"="+u)
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// unhealthyFor bounds the retries of a change etcd refuses as "unhealthy
// cluster": etcd's strict reconfiguration check wants every member
// connected for a few seconds (5 s in etcd 3.x) before it changes the
// membership, which a cluster that has just started or changed is not.
const unhealthyFor = 30 * time.Second

func retryUnhealthy(ctx context.Context, change func() error) error {
	deadline := time.Now().Add(unhealthyFor)
	for {
		err := change()
		if !errors.Is(err, rpctypes.ErrUnhealthy) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ErrLearnerStuck: the learner made no progress for the learner timeout.
var ErrLearnerStuck = errors.New("the learner made no progress")

// Promote promotes the learner once it is in sync, asking again while etcd
// says it is not yet. progress reports the learner's raft index; if that
// does not grow for stuckAfter, Promote gives up with ErrLearnerStuck.
func (c *Changer) Promote(ctx context.Context, lock *Lock, id uint64, progress func(context.Context) (uint64, error), stuckAfter time.Duration) error {
	var last uint64
	lastMove := time.Now()
	// Asking is cheap (the leader compares match indexes), and the member
	// should vote as soon as it can: ask every 25 ms while the learner's
	// index moves (it is catching up, and ready any moment), backing off
	// to 200 ms while it does not (a snapshot still on its way).
	const fast, slow = 25 * time.Millisecond, 200 * time.Millisecond
	for wait := fast; ; {
		if err := lock.Check(ctx); err != nil {
			return err
		}
		_, err := c.Client.MemberPromote(ctx, id)
		switch {
		case err == nil:
			c.Log.Info("promoted learner to voter", zap.String("id", HexID(id)))
			return nil
		case errors.Is(err, rpctypes.ErrMemberNotLearner):
			// Promoted by an earlier attempt that died before it said so.
			c.Log.Info("the learner is a voter already", zap.String("id", HexID(id)))
			return nil
		case !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) && !errors.Is(err, rpctypes.ErrGRPCLearnerNotReady):
			return fmt.Errorf("promote learner %s: %w", HexID(id), err)
		}
		if idx, perr := progress(ctx); perr == nil && idx > last {
			last, lastMove, wait = idx, time.Now(), fast
		} else {
			wait = min(2*wait, slow)
		}
		if time.Since(lastMove) >= stuckAfter {
			return fmt.Errorf("%w for %s (raft index %d; etcd says: %v)", ErrLearnerStuck, stuckAfter, last, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("promote learner %s: %w", HexID(id), ctx.Err())
		case <-time.After(wait):
		}
	}
}
