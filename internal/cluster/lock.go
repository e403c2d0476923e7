package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// LockKey is the membership lock: every membership change and every step
// of a rolling operation holds it, so the cluster sees one change at a time.
const LockKey = Prefix + "locks/membership"

// lockTTL is the lease behind the lock: a holder that dies (kill -9, a
// host cut off) releases the lock this long after its last keepalive.
const lockTTL = 10 * time.Second

// ErrLockLost means the lock's key is gone (its lease expired, or an
// operator deleted it) and a write made under it was refused: another
// etcdvisor may hold the lock now, so the caller must stop its operation.
var ErrLockLost = errors.New("the membership lock was lost (its lease expired); another etcdvisor may hold it now")

// Lock is a held membership lock.
//
// An etcd lock alone does not give mutual exclusion: a holder paused past
// its lease (a GC pause, a stopped VM) wakes up believing it still holds
// the lock while another already does (Jepsen, etcd 3.4.3). So every write
// etcdvisor makes under the lock goes through Put, a transaction that
// succeeds only while the lock's own key still exists with the revision it
// was created at: a stale holder's write fails instead of landing.
type Lock struct {
	sess   *concurrency.Session
	mu     *concurrency.Mutex
	holder string
	rev    int64 // the lock key's create revision
}

// Holder is what a held lock says about who holds it and why.
type Holder struct {
	Holder   string `json:"holder"`
	Revision int64  `json:"revision"` // the lock key's create revision: the fencing token
}

// AcquireLock waits until this caller holds the membership lock or ctx
// ends. holder names the caller ("join of m4 by etcdvisor on host3") and is
// shown to anyone who has to wait; waiting calls onWait once with the
// current holder, so a CLI can say why it is waiting.
func AcquireLock(ctx context.Context, cli *clientv3.Client, holder string, onWait func(Holder)) (*Lock, error) {
	sess, err := newSession(ctx, cli)
	if err != nil {
		return nil, fmt.Errorf("membership lock: open a session (this needs a cluster with a quorum): %w", err)
	}
	mu := concurrency.NewMutex(sess, LockKey)
	err = mu.TryLock(ctx)
	if errors.Is(err, concurrency.ErrLocked) {
		if onWait != nil {
			if h, herr := LockHolder(ctx, cli); herr == nil && h != nil {
				onWait(*h)
			}
		}
		err = mu.Lock(ctx)
	}
	if err != nil {
		closeSession(sess)
		return nil, fmt.Errorf("membership lock %s: %w", LockKey, err)
	}
	l := &Lock{sess: sess, mu: mu, holder: holder}
	// The mutex writes its key with an empty value; say who holds it, in a
	// write fenced like every other.
	if err := l.Put(ctx, mu.Key(), holder); err != nil {
		l.Release()
		return nil, err
	}
	resp, err := cli.Get(ctx, mu.Key())
	if err != nil || len(resp.Kvs) == 0 {
		l.Release()
		return nil, fmt.Errorf("membership lock: read back %s: %v", mu.Key(), err)
	}
	l.rev = resp.Kvs[0].CreateRevision
	return l, nil
}

// sessionRetryFor bounds the retries of opening the lock's session: a
// change is often asked for right after a member failed, while the others
// elect a new leader, and a lease grant then times out.
const sessionRetryFor = 15 * time.Second

func newSession(ctx context.Context, cli *clientv3.Client) (*concurrency.Session, error) {
	deadline := time.Now().Add(sessionRetryFor)
	for {
		// The session's context keeps its lease alive until Release, so it
		// must outlive ctx; the grant is bounded by etcd's request timeout.
		sess, err := concurrency.NewSession(cli, concurrency.WithTTL(int(lockTTL/time.Second)), concurrency.WithContext(context.WithoutCancel(ctx)))
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return sess, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Revision is the fencing token: the create revision of this holder's key.
func (l *Lock) Revision() int64 { return l.rev }

// Put writes key=value only while this lock is held, on the lock's lease
// if key is the lock's own, otherwise without a lease.
func (l *Lock) Put(ctx context.Context, key, value string) error {
	var opts []clientv3.OpOption
	if key == l.mu.Key() {
		opts = append(opts, clientv3.WithLease(l.sess.Lease()))
	}
	return l.Txn(ctx, clientv3.OpPut(key, value, opts...))
}

// Delete removes key only while this lock is held.
func (l *Lock) Delete(ctx context.Context, key string) error {
	return l.Txn(ctx, clientv3.OpDelete(key))
}

// Txn applies ops atomically, only while this lock is held.
func (l *Lock) Txn(ctx context.Context, ops ...clientv3.Op) error {
	resp, err := l.sess.Client().Txn(ctx).If(l.mu.IsOwner()).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("write under the membership lock: %w", err)
	}
	if !resp.Succeeded {
		return ErrLockLost
	}
	return nil
}

// Check confirms the lock is still held, just before a change that cannot
// itself be made conditional (a raft conf change is not a transaction op):
// a holder whose lease lapsed stops here instead of changing membership
// alongside the new holder.
func (l *Lock) Check(ctx context.Context) error {
	select {
	case <-l.Lost():
		return ErrLockLost
	default:
	}
	return l.Txn(ctx)
}

// Lost is closed when the lock's session ends: its lease expired or could
// not be kept alive. An operation holding the lock stops at its next step.
func (l *Lock) Lost() <-chan struct{} { return l.sess.Done() }

// Release gives the lock up and revokes its lease, so the next waiter goes
// on at once rather than after the lease expires.
func (l *Lock) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.mu.Unlock(ctx)
	closeSession(l.sess)
}

func closeSession(s *concurrency.Session) {
	// Close revokes the lease; bounded, since without quorum it cannot.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.Client().Revoke(ctx, s.Lease())
	s.Orphan()
}

// LockHolder reads who holds the membership lock now; nil if nobody does.
func LockHolder(ctx context.Context, cli *clientv3.Client) (*Holder, error) {
	resp, err := cli.Get(ctx, LockKey+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return nil, fmt.Errorf("read the membership lock: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	kv := resp.Kvs[0]
	h := Holder{Holder: string(kv.Value), Revision: kv.CreateRevision}
	if h.Holder == "" {
		h.Holder = "(an etcdvisor that has just taken it)"
	}
	return &h, nil
}
