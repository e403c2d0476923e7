// Package cluster coordinates the etcdvisors of one etcd cluster through
// the cluster itself, under a prefix Kubernetes never uses: each etcdvisor
// publishes itself in a registry kept alive on a lease, so its peers see
// which members have a live etcdvisor and how healthy each says it is.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Prefix is the root of everything etcdvisor keeps in etcd.
const Prefix = "/etcdvisor/v1/"

// NodesPrefix holds one key per member: NodesPrefix + member name.
const NodesPrefix = Prefix + "nodes/"

// Record is what an etcdvisor publishes about its member.
type Record struct {
	Name             string    `json:"name"`
	MemberID         string    `json:"memberID"`
	PeerURLs         []string  `json:"peerURLs"`
	ClientURLs       []string  `json:"clientURLs"`
	EtcdvisorVersion string    `json:"etcdvisorVersion"`
	EtcdVersion      string    `json:"etcdVersion"`
	Health           string    `json:"health"` // ok, degraded, critical; "" before the first judgement
	Reasons          []string  `json:"reasons,omitempty"`
	LastSnapshot     time.Time `json:"lastSnapshot,omitzero"`
	UpdatedAt        time.Time `json:"updatedAt"`
}

// Registry keeps this member's record alive. The key is bound to a lease:
// an etcdvisor that dies, or a host cut off from the cluster, drops out once
// the lease expires, and peers read that as "no live etcdvisor".
type Registry struct {
	cli *clientv3.Client
	ttl time.Duration
	lg  *zap.Logger

	mu      sync.Mutex
	rec     Record
	changed chan struct{} // a new record waits to be written
}

// NewRegistry publishes through cli with a lease of ttl (at least 5 s: a
// shorter lease expires on an ordinary leader election).
func NewRegistry(cli *clientv3.Client, ttl time.Duration, lg *zap.Logger) *Registry {
	return &Registry{cli: cli, ttl: max(ttl, 5*time.Second), lg: lg, changed: make(chan struct{}, 1)}
}

// Set replaces the record; Run writes it soon after. Cheap and non-blocking,
// so the supervisor loop can call it every second: an unchanged record is
// written again only when the refresh is due.
func (r *Registry) Set(rec Record) {
	r.mu.Lock()
	same := sameRecord(r.rec, rec)
	r.rec = rec
	r.mu.Unlock()
	if !same {
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}
}

// sameRecord ignores UpdatedAt, which changes on every write.
func sameRecord(a, b Record) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// Run keeps the record published until ctx ends, then revokes the lease so
// peers see at once that this etcdvisor stopped. Without quorum nothing can
// be written: it retries, and logs the first failure of each outage.
func (r *Registry) Run(ctx context.Context) error {
	refresh := r.ttl / 3
	var lease clientv3.LeaseID
	failing := false
	defer func() {
		if lease != 0 {
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			r.cli.Revoke(rctx, lease)
			cancel()
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.changed:
		}
		var err error
		lease, err = r.publish(ctx, lease)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			failing = true
			r.lg.Warn("cannot publish this etcdvisor in the registry; retrying", zap.Error(err))
		case err == nil && failing:
			failing = false
			r.lg.Info("published this etcdvisor in the registry again")
		}
		next := refresh
		if err != nil {
			next = time.Second
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

// publish renews the lease (granting a new one if it expired) and writes
// the record under it.
func (r *Registry) publish(ctx context.Context, lease clientv3.LeaseID) (clientv3.LeaseID, error) {
	ctx, cancel := context.WithTimeout(ctx, r.ttl/3)
	defer cancel()
	if lease != 0 {
		if _, err := r.cli.KeepAliveOnce(ctx, lease); err != nil {
			lease = 0 // expired or unknown: start over
		}
	}
	if lease == 0 {
		g, err := r.cli.Grant(ctx, int64(r.ttl/time.Second))
		if err != nil {
			return 0, fmt.Errorf("grant lease: %w", err)
		}
		lease = g.ID
	}
	r.mu.Lock()
	rec := r.rec
	r.mu.Unlock()
	if rec.Name == "" {
		return lease, errors.New("no record to publish yet")
	}
	rec.UpdatedAt = time.Now().UTC()
	b, err := json.Marshal(rec)
	if err != nil {
		return lease, err
	}
	if _, err := r.cli.Put(ctx, NodesPrefix+rec.Name, string(b), clientv3.WithLease(lease)); err != nil {
		return lease, fmt.Errorf("put %s: %w", NodesPrefix+rec.Name, err)
	}
	return lease, nil
}

// List reads every published record, by member name. A serializable read:
// it answers from this member even without quorum (and may then be stale).
func List(ctx context.Context, cli *clientv3.Client) (map[string]Record, error) {
	if cli == nil {
		return nil, errors.New("read registry: the member is not running")
	}
	resp, err := cli.Get(ctx, NodesPrefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	out := make(map[string]Record, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec Record
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			continue // a record from a newer etcdvisor we cannot read is no record
		}
		out[strings.TrimPrefix(string(kv.Key), NodesPrefix)] = rec
	}
	return out, nil
}
