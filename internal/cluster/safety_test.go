package cluster

import (
	"strings"
	"testing"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

// view builds a View from "name:state" specs: state is up, down or learner.
// The first member that is up leads.
func view(specs ...string) View {
	var v View
	for i, s := range specs {
		name, state, _ := strings.Cut(s, ":")
		m := api.MemberHealth{Member: api.Member{ID: HexID(uint64(i + 1)), Name: name, PeerURLs: []string{"http://" + name + ":2380"}}}
		switch state {
		case "up":
			m.Healthy = true
		case "down":
			m.Error = "connection refused"
		case "learner":
			m.Healthy, m.IsLearner = true, true
		}
		if m.Healthy && !m.IsLearner && v.LeaderID == 0 {
			v.LeaderID = uint64(i + 1)
		}
		v.Members = append(v.Members, m)
	}
	return v
}

func TestCheckRemove(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v      View
		target string
		force  bool
		want   string // "" allowed, else a fragment of the refusal
	}{
		{"a down voter of three", view("a:up", "b:up", "c:down"), "c", false, ""},
		{"a healthy voter without force", view("a:up", "b:up", "c:up"), "c", false, "it is healthy"},
		{"a healthy voter with force", view("a:up", "b:up", "c:up"), "c", true, ""},
		{"a down voter while another is down", view("a:up", "b:down", "c:down"), "c", false, "fewer than the quorum"},
		{"a healthy voter while another is down, even forced", view("a:up", "b:up", "c:down"), "b", true, "fewer than the quorum"},
		{"two of five down: one may go", view("a:up", "b:up", "c:up", "d:down", "e:down"), "e", false, ""},
		{"three of five down: none may go", view("a:up", "b:up", "c:down", "d:down", "e:down"), "e", false, "fewer than the quorum"},
		{"a learner", view("a:up", "b:up", "c:up", "d:learner"), "d", false, ""},
		{"the last voter", view("a:up"), "a", true, "last voting member"},
		{"an unknown name", view("a:up", "b:up", "c:up"), "zz", true, `no member named "zz"`},
		{"no leader", view("a:down", "b:down", "c:down"), "c", true, "no leader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CheckRemove(tc.v, tc.target, tc.force)
			checkRule(t, err, tc.want)
		})
	}
}

func TestCheckAdd(t *testing.T) {
	for _, tc := range []struct {
		name, newName string
		v             View
		want          string
	}{
		{"to a healthy cluster", "d", view("a:up", "b:up", "c:up"), ""},
		{"a name in use", "b", view("a:up", "b:up", "c:up"), `named "b" is already`},
		{"a peer URL that only looks alike", "x", view("a:up", "x2:up"), ""},
		{"while a voter is down", "d", view("a:up", "b:up", "c:down"), "not healthy"},
		{"while a learner waits", "e", view("a:up", "b:up", "c:up", "d:learner"), "one join at a time"},
		{"without a leader", "d", view("a:down", "b:down"), "no leader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkRule(t, CheckAdd(tc.v, tc.newName, []string{"http://" + tc.newName + ":2380"}), tc.want)
		})
	}
	err := CheckAdd(view("a:up", "b:up"), "new", []string{"http://b:2380"})
	checkRule(t, err, "already belongs to member b")
}

func TestCheckRemoveThenAdd(t *testing.T) {
	for _, tc := range []struct {
		name     string
		v        View
		replaces string
		force    bool
		want     string
	}{
		{"a down member of three", view("a:up", "b:up", "c:down"), "c", false, ""},
		{"a healthy member", view("a:up", "b:up", "c:up"), "c", false, "it is healthy"},
		{"a healthy member, forced", view("a:up", "b:up", "c:up"), "c", true, ""},
		{"while another member is down", view("a:up", "b:down", "c:down"), "c", false, "fewer than the quorum"},
		{"one of two down in five", view("a:up", "b:up", "c:up", "d:down", "e:down"), "e", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CheckRemoveThenAdd(tc.v, tc.replaces, "new", []string{"http://new:2380"}, tc.force)
			checkRule(t, err, tc.want)
		})
	}
	// The replacement may take the removed member's name and peer URL.
	if _, err := CheckRemoveThenAdd(view("a:up", "b:up", "c:down"), "c", "c", []string{"http://c:2380"}, false); err != nil {
		t.Errorf("replacing c by a new c: %v", err)
	}
}

func checkRule(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("refused: %v", err)
	case want != "" && err == nil:
		t.Errorf("allowed, want a refusal containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("refusal %q does not contain %q", err, want)
	}
}

func TestARollingRestartTakesFollowersByNameAndTheLeaderLast(t *testing.T) {
	v := view("c:up", "a:up", "b:up") // c, the first up, leads
	for i := range v.Members {
		v.Members[i].IsLeader = v.Members[i].ID == HexID(v.LeaderID)
	}
	order, err := RestartOrder(v)
	if err != nil || strings.Join(order, ",") != "a,b,c" {
		t.Fatalf("order %v %v, want a,b,c", order, err)
	}
	r := Rolling{Order: order}
	for _, want := range []string{"a", "b", "c", ""} {
		if got := r.Next(); got != want {
			t.Fatalf("next after %v: %q, want %q", r.Done, got, want)
		}
		r.Done = append(r.Done, want)
	}
	if _, err := RestartOrder(view("a:down", "b:down")); err == nil {
		t.Error("a rolling restart was planned without a leader")
	}
	unstarted := view("a:up", "b:up")
	unstarted.Members = append(unstarted.Members, api.MemberHealth{Member: api.Member{ID: "ff"}})
	if _, err := RestartOrder(unstarted); err == nil || !strings.Contains(err.Error(), "never started") {
		t.Errorf("a member added but never started: %v", err)
	}
}
