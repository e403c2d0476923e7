package cluster

import (
	"errors"
	"fmt"
	"strings"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

// The safety rules every membership change passes before it is made. They
// are plain functions of a View, so each is tested on its own; the caller
// holds the membership lock, so the view cannot change under another
// etcdvisor's hands between the check and the change.

// ErrNoLeader: nothing proceeds while the cluster has no leader.
var ErrNoLeader = fmt.Errorf("%w: it has no leader: no membership change proceeds without one (wait for an election, or restore quorum first)", ErrNotHealthy)

// ErrNotHealthy marks refusals that a wait may cure: a member that is still
// starting, or that has just been promoted and not yet answered.
var ErrNotHealthy = errors.New("the cluster is not healthy")

// CheckLeader refuses any change while no leader is seen.
func CheckLeader(v View) error {
	if v.LeaderID == 0 {
		return ErrNoLeader
	}
	return nil
}

// CheckRemove decides whether the member nameOrID may be removed.
//
// A learner may always go: it does not vote. A voter may go only if the
// voters that remain, counting only the healthy ones, still form a quorum
// of the smaller cluster; that rule has no override, since breaking it
// stops every write. Removing a healthy voter lowers the cluster's fault
// tolerance for no failure; it needs force, and the error says what force
// risks.
func CheckRemove(v View, nameOrID string, force bool) (api.MemberHealth, error) {
	if err := CheckLeader(v); err != nil {
		return api.MemberHealth{}, err
	}
	target, ok := v.Find(nameOrID)
	if !ok {
		return api.MemberHealth{}, fmt.Errorf("no member named %q in the cluster (members: %s)", nameOrID, names(v.Members))
	}
	if target.IsLearner {
		return target, nil
	}
	remaining, healthy := 0, 0
	var down []string
	for _, m := range v.Voters() {
		if m.ID == target.ID {
			continue
		}
		remaining++
		if m.Healthy {
			healthy++
		} else {
			down = append(down, displayName(m))
		}
	}
	if remaining == 0 {
		return target, fmt.Errorf("refusing to remove %s: it is the last voting member", displayName(target))
	}
	if need := Quorum(remaining); healthy < need {
		return target, fmt.Errorf("refusing to remove %s: %d voters would remain and only %d of them are healthy (%s down), fewer than the quorum of %d; the cluster would stop accepting writes. Bring the down members back first",
			displayName(target), remaining, healthy, strings.Join(down, ", "), need)
	}
	if target.Healthy && !force {
		return target, fmt.Errorf("refusing to remove %s: it is healthy. Removing it leaves %d voters, which tolerate %d failure(s) instead of %d until a replacement joins; force it (join.force, or --force) if that is what you mean",
			displayName(target), remaining, (remaining-1)/2, (len(v.Voters())-1)/2)
	}
	return target, nil
}

// CheckAdd decides whether a new member with the given name and peer URLs
// may be added (always as a learner). Its name and URLs must be new, and
// every voter must be healthy: a join copies the whole database from the
// leader, and a cluster already missing a voter should not take that load
// on top.
func CheckAdd(v View, name string, peerURLs []string) error {
	return checkAdd(v, name, peerURLs, true)
}

// checkAdd is CheckAdd; a replacement passes allHealthy false, since the
// member it replaces was removed for being down and others may be too
// (replace them one by one), as long as the healthy voters are a quorum.
func checkAdd(v View, name string, peerURLs []string, allHealthy bool) error {
	if err := CheckLeader(v); err != nil {
		return err
	}
	for _, m := range v.Members {
		if name != "" && m.Name == name {
			return fmt.Errorf("a member named %q is already in the cluster (ID %s); choose another name, or replace it with --replaces %s", name, m.ID, name)
		}
		for _, u := range m.PeerURLs {
			for _, p := range peerURLs {
				if u == p {
					return fmt.Errorf("peer URL %s already belongs to member %s (ID %s)", p, displayName(m), m.ID)
				}
			}
		}
	}
	for _, m := range v.Members {
		if m.IsLearner {
			return fmt.Errorf("member %s (ID %s) is still a learner: one join at a time; wait for it to be promoted, or remove it", displayName(m), m.ID)
		}
	}
	var down []string
	voters := v.Voters()
	for _, m := range voters {
		if !m.Healthy {
			down = append(down, displayName(m)+": "+m.Error)
		}
	}
	if len(down) > 0 && (allHealthy || len(voters)-len(down) < Quorum(len(voters))) {
		return fmt.Errorf("%w, refusing to add a member: %s", ErrNotHealthy, strings.Join(down, "; "))
	}
	return nil
}

// CheckRemoveThenAdd is the replace rule: the removal must pass on the
// view as it is, and the add on the view without the removed member.
func CheckRemoveThenAdd(v View, replaces, name string, peerURLs []string, force bool) (api.MemberHealth, error) {
	target, err := CheckRemove(v, replaces, force)
	if err != nil {
		return target, err
	}
	rest := View{LeaderID: v.LeaderID}
	for _, m := range v.Members {
		if m.ID != target.ID {
			rest.Members = append(rest.Members, m)
		}
	}
	if name == target.Name {
		name = "" // the new member takes the old one's name
	}
	return target, checkAdd(rest, name, peerURLs, false)
}

func displayName(m api.MemberHealth) string {
	if m.Name == "" {
		return "(unstarted " + m.ID + ")"
	}
	return m.Name
}

func names(ms []api.MemberHealth) string {
	var out []string
	for _, m := range ms {
		out = append(out, displayName(m))
	}
	return strings.Join(out, ", ")
}
