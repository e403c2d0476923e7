package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdvisor/etcdvisor/internal/endpoints"
)

// JoinsPrefix holds one record per join in progress or last finished:
// JoinsPrefix + new member name.
const JoinsPrefix = Prefix + "ops/joins/"

// The steps of a join, in order. Each is written before the next change,
// so a restarted etcdvisor (or an operator) knows how far it got.
const (
	StepChecked  = "checked"       // pre-flight passed, snapshot taken
	StepRemoved  = "removed"       // the replaced member is gone
	StepLearner  = "learner-added" // the new member is a learner
	StepPromoted = "promoted"      // done: the new member votes
	StepAborted  = "aborted"       // undone: the learner was removed again
)

// JoinRecord journals one join.
type JoinRecord struct {
	Name      string    `json:"name"`
	PeerURLs  []string  `json:"peerURLs"`
	Replaces  string    `json:"replaces,omitempty"`
	RemovedID string    `json:"removedID,omitempty"`
	LearnerID string    `json:"learnerID,omitempty"`
	Step      string    `json:"step"`
	Error     string    `json:"error,omitempty"`
	LockRev   int64     `json:"lockRevision"`
	StartedAt time.Time `json:"startedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Journal keeps a join's record in the cluster, written under the lock,
// and in a local file, so the step is known even when the cluster is not
// reachable from here.
type Journal struct {
	File string // local copy; "" for none
}

// Record writes rec at its step in both places.
func (j Journal) Record(ctx context.Context, lock *Lock, rec *JoinRecord) error {
	rec.UpdatedAt = time.Now().UTC()
	if rec.StartedAt.IsZero() {
		rec.StartedAt = rec.UpdatedAt
	}
	rec.LockRev = lock.Revision()
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if j.File != "" {
		if _, err := endpoints.WriteFile(j.File, b); err != nil {
			return fmt.Errorf("journal the join locally: %w", err)
		}
	}
	if err := lock.Put(ctx, JoinsPrefix+rec.Name, string(b)); err != nil {
		return fmt.Errorf("journal the join (step %s): %w", rec.Step, err)
	}
	return nil
}

// Local reads the local journal; nil if there is none.
func (j Journal) Local() (*JoinRecord, error) {
	b, err := os.ReadFile(j.File)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the local join journal: %w", err)
	}
	var rec JoinRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("local join journal %s: %w", j.File, err)
	}
	return &rec, nil
}

// Joins reads every journalled join from the cluster.
func Joins(ctx context.Context, cli *clientv3.Client) ([]JoinRecord, error) {
	resp, err := cli.Get(ctx, JoinsPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read the join journal: %w", err)
	}
	var out []JoinRecord
	for _, kv := range resp.Kvs {
		var rec JoinRecord
		if json.Unmarshal(kv.Value, &rec) == nil {
			out = append(out, rec)
		}
	}
	return out, nil
}
