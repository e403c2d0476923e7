package supervisor

import (
	"slices"
	"testing"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

func TestALearnerIsAbandonedOnlyWhileTheLockStaysFree(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	after := 10 * time.Second
	members := []api.Member{{ID: "1", Name: "a"}, {ID: "2", Name: "b"}, {ID: "ff", IsLearner: true}}
	var a abandoned

	if got := a.update(t0, members, true, after); len(got) != 0 {
		t.Fatalf("abandoned at first sight: %v", got)
	}
	// A joiner takes the lock (it restarted): the clock starts over.
	a.update(t0.Add(5*time.Second), members, false, after)
	if got := a.update(t0.Add(12*time.Second), members, true, after); len(got) != 0 {
		t.Errorf("abandoned although the lock was held 7s ago: %v", got)
	}
	if got := a.update(t0.Add(22*time.Second), members, true, after); !slices.Equal(got, []string{"ff"}) {
		t.Errorf("after 10s with the lock free: %v, want [ff]", got)
	}
	// Voters are never candidates, and a learner gone is forgotten.
	if got := a.update(t0.Add(40*time.Second), members[:2], true, after); len(got) != 0 || len(a.since) != 0 {
		t.Errorf("after the learner left: %v, tracked %v", got, a.since)
	}
}
