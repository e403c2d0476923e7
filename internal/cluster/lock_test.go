package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTheMembershipLockIsHeldByOneAtATime(t *testing.T) {
	url := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := AcquireLock(ctx, newClient(t, url), "join of d", nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := LockHolder(ctx, newClient(t, url))
	if err != nil || h == nil || h.Holder != "join of d" || h.Revision != first.Revision() {
		t.Fatalf("holder: %+v %v, want join of d at revision %d", h, err, first.Revision())
	}

	waited := make(chan Holder, 1)
	got := make(chan *Lock, 1)
	go func() {
		l, err := AcquireLock(ctx, newClient(t, url), "join of e", func(h Holder) { waited <- h })
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	if w := <-waited; w.Holder != "join of d" {
		t.Errorf("the second caller was told %q holds the lock, want join of d", w.Holder)
	}
	select {
	case <-got:
		t.Fatal("a second caller took the lock while the first held it")
	case <-time.After(500 * time.Millisecond):
	}
	if err := first.Put(ctx, Prefix+"test/step", "1"); err != nil {
		t.Fatalf("write under the held lock: %v", err)
	}
	first.Release()
	second := <-got
	if second == nil {
		t.FailNow()
	}
	defer second.Release()
	if second.Revision() <= first.Revision() {
		t.Errorf("fencing token did not grow: %d then %d", first.Revision(), second.Revision())
	}
	// The first holder, waking up late, cannot write any more.
	if err := first.Put(ctx, Prefix+"test/step", "stale"); !errors.Is(err, ErrLockLost) {
		t.Errorf("a write by the released holder: %v, want ErrLockLost", err)
	}
}

func TestAHolderWhoseLeaseExpiredCannotWrite(t *testing.T) {
	url := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := newClient(t, url)
	l, err := AcquireLock(ctx, cli, "rolling restart", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	// What an expired lease looks like to etcd: the lease and its keys are
	// gone. (Waiting out a real expiry would need a paused process.)
	if _, err := cli.Revoke(ctx, l.sess.Lease()); err != nil {
		t.Fatal(err)
	}
	<-l.Lost()
	if err := l.Put(ctx, Prefix+"test/step", "late"); !errors.Is(err, ErrLockLost) {
		t.Fatalf("write after the lease expired: %v, want ErrLockLost", err)
	}
	resp, err := cli.Get(ctx, Prefix+"test/step")
	if err != nil || len(resp.Kvs) != 0 {
		t.Errorf("the stale write landed: %v %v", resp, err)
	}
	other, err := AcquireLock(ctx, newClient(t, url), "next", nil)
	if err != nil {
		t.Fatalf("the lock is not free after the holder's lease ended: %v", err)
	}
	other.Release()
}
