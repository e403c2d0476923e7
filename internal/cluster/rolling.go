package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// RollingKey holds the rolling operation in progress, or the last one.
const RollingKey = Prefix + "ops/rolling"

// Rolling operation phases.
const (
	RollingRunning = "running"
	RollingDone    = "done"
	RollingAborted = "aborted"
)

// Rolling is a rolling restart: each member's etcdvisor restarts in turn,
// followers first and the leader last, each only when the whole cluster is
// healthy. The member whose turn it is writes itself as Current (under the
// lock) and exits for systemd to start it again; its next incarnation,
// once ready, adds itself to Done. No coordinator: each etcdvisor acts on
// its own turn, so the operation goes on whichever member asked for it.
type Rolling struct {
	ID          string    `json:"id"`
	Order       []string  `json:"order"` // member names
	Done        []string  `json:"done"`
	Current     string    `json:"current,omitempty"`    // restarting now
	CurrentRun  string    `json:"currentRun,omitempty"` // the run (process incarnation) that exited
	CurrentFrom time.Time `json:"currentFrom,omitzero"` // when Current began its restart
	Phase       string    `json:"phase"`                // running, done, aborted
	RequestedBy string    `json:"requestedBy"`          // who asked
	Error       string    `json:"error,omitempty"`      // why it was aborted
	StartedAt   time.Time `json:"startedAt"`            //
	UpdatedAt   time.Time `json:"updatedAt"`            //
	Revision    int64     `json:"-"`                    // the key's mod revision when read
}

// Next is the member whose turn comes after the current one; "" when all
// are done.
func (r Rolling) Next() string {
	for _, name := range r.Order {
		if !slices.Contains(r.Done, name) {
			return name
		}
	}
	return ""
}

// RestartOrder is the order of a rolling restart of the view's started
// members: followers first (by name, so every etcdvisor computes the same
// order), the leader last, so leadership moves once rather than at every
// step.
func RestartOrder(v View) ([]string, error) {
	if err := CheckLeader(v); err != nil {
		return nil, err
	}
	var order []string
	leader := ""
	for _, m := range v.Members {
		switch {
		case m.Name == "":
			return nil, fmt.Errorf("member %s was added but never started: finish or abort its join first", m.ID)
		case m.IsLeader:
			leader = m.Name
		default:
			order = append(order, m.Name)
		}
	}
	slices.Sort(order)
	return append(order, leader), nil
}

// ReadRolling reads the rolling operation; nil if there never was one.
func ReadRolling(ctx context.Context, cli *clientv3.Client) (*Rolling, error) {
	resp, err := cli.Get(ctx, RollingKey)
	if err != nil {
		return nil, fmt.Errorf("read the rolling operation: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var r Rolling
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return nil, fmt.Errorf("rolling operation %s: %w", RollingKey, err)
	}
	r.Revision = resp.Kvs[0].ModRevision
	return &r, nil
}

// ErrRollingChanged: the operation changed between read and write (another
// etcdvisor stepped it, or an operator aborted it); read it again.
var ErrRollingChanged = errors.New("the rolling operation changed meanwhile")

// WriteRolling writes r under the lock, and only if the key is still at
// r.Revision (0: absent), so two etcdvisors never step it from the same
// state.
func WriteRolling(ctx context.Context, lock *Lock, r *Rolling) error {
	r.UpdatedAt = time.Now().UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	cli := lock.sess.Client()
	resp, err := cli.Txn(ctx).
		If(lock.mu.IsOwner(), clientv3.Compare(clientv3.ModRevision(RollingKey), "=", r.Revision)).
		Then(clientv3.OpPut(RollingKey, string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("write the rolling operation: %w", err)
	}
	if !resp.Succeeded {
		if err := lock.Txn(ctx); err != nil {
			return err
		}
		return ErrRollingChanged
	}
	r.Revision = resp.Header.Revision
	return nil
}

// Status is what runs under the reserved prefix: GET /v1/cluster.
type Status struct {
	Rolling *Rolling     `json:"rolling"`
	Joins   []JoinRecord `json:"joins"`
	Lock    *Holder      `json:"lock"`
}
