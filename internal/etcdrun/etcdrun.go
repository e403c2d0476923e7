// Package etcdrun runs the local etcd member, embedded in this process or
// (later) as a supervised child process, behind one small interface.
package etcdrun

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Member is the local etcd member as the supervisor sees it.
type Member interface {
	// Start launches the member and returns once it is running, not
	// necessarily ready. A start that fails leaves nothing running.
	Start(ctx context.Context) error
	// Ready is closed once the member serves linearizable reads.
	Ready() <-chan struct{}
	// Err delivers a fatal error of a started member: it stopped on its
	// own, or failed to serve. It is not sent to after Stop.
	Err() <-chan error
	// Stop shuts the member down gracefully; a leader hands leadership to
	// another member first. It returns when the member has stopped or ctx
	// is done.
	Stop(ctx context.Context) error
	// Client talks to the member; valid after Start until Stop.
	Client() *clientv3.Client
}

// ErrStopped is returned by Stop on a member that was already stopped.
var ErrStopped = errors.New("etcd member already stopped")

// waitLinearizable retries a linearizable read until it succeeds or ctx
// ends. ReadyNotify alone only says the member joined raft; a
// linearizable read also proves a leader exists and this member has caught
// up to it, which is what clients need.
func waitLinearizable(ctx context.Context, cli *clientv3.Client, attempt func(error)) error {
	backoff := 50 * time.Millisecond
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		// The "health" key is the one etcd's own /health check reads.
		_, err := cli.Get(rctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("wait for linearizable read: %w", ctx.Err())
		}
		attempt(err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for linearizable read: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}
