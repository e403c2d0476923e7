package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/etcdvisor/etcdvisor/internal/testetcd"
)

// A learner that never catches up (here: added, never started) is not
// promoted; Promote gives up once it has made no progress for the limit,
// and the learner can then be removed without touching the quorum.
func TestALearnerThatMakesNoProgressIsNotPromoted(t *testing.T) {
	url := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := newClient(t, url)
	ch := Changer{Client: cli, Log: zaptest.NewLogger(t)}
	lock, err := AcquireLock(ctx, cli, "test join", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()

	id, members, err := ch.AddLearner(ctx, lock, []string{peerURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 {
		t.Fatalf("member list after the add: %d members", len(members))
	}
	if got := InitialCluster(members, id, "new"); !strings.Contains(got, "new=") || !strings.Contains(got, "m1=") {
		t.Errorf("initial cluster %q lacks the new member or m1", got)
	}
	asked := 0
	progress := func(context.Context) (uint64, error) { asked++; return 7, nil }
	err = ch.Promote(ctx, lock, id, progress, time.Second)
	if !errors.Is(err, ErrLearnerStuck) {
		t.Fatalf("promote of a learner that never ran: %v, want ErrLearnerStuck", err)
	}
	if asked < 2 {
		t.Errorf("progress asked %d times, want the learner watched while it was retried", asked)
	}

	// A learner goes even when it is the only other member.
	v, err := ch.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := v.Find(HexID(id)); !ok || !m.IsLearner {
		t.Fatalf("learner %x not in the view as a learner: %+v", id, v.Members)
	}
	if _, err := ch.Remove(ctx, lock, HexID(id), false); err != nil {
		t.Fatalf("remove the learner: %v", err)
	}
	// The last voter does not.
	if _, err := ch.Remove(ctx, lock, "m1", true); err == nil || !strings.Contains(err.Error(), "last voting member") {
		t.Errorf("remove the last voter: %v", err)
	}
}

func TestAChangeUnderALostLockIsRefused(t *testing.T) {
	url := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := newClient(t, url)
	lock, err := AcquireLock(ctx, cli, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	if _, err := cli.Revoke(ctx, lock.sess.Lease()); err != nil {
		t.Fatal(err)
	}
	ch := Changer{Client: cli, Log: zaptest.NewLogger(t)}
	if _, _, err := ch.AddLearner(ctx, lock, []string{peerURL(t)}); !errors.Is(err, ErrLockLost) {
		t.Fatalf("add under a lost lock: %v, want ErrLockLost", err)
	}
	resp, err := cli.MemberList(ctx)
	if err != nil || len(resp.Members) != 1 {
		t.Errorf("the membership changed under a lost lock: %v %v", resp, err)
	}
}

func peerURL(t *testing.T) string {
	u := testetcd.FreeURL(t, "http")
	return u.String()
}
