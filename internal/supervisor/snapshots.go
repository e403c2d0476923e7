package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/snapshot"
)

// errSnapshotRunning answers a request while a snapshot is in progress.
var errSnapshotRunning = errors.New("a snapshot is already running")

// snapshotter takes the member's snapshots, scheduled or requested, one at
// a time, and applies retention after each good one.
type snapshotter struct {
	s          *Supervisor
	lg         *zap.Logger
	cfg        config.Snapshot
	dir        string
	recipients []age.Recipient
	schedule   *snapshot.Schedule // nil: on request only

	mu      sync.Mutex
	running time.Time // start of the snapshot in progress; zero when idle
	last    *snapshot.Listed
	lastErr string
}

func newSnapshotter(s *Supervisor) (*snapshotter, error) {
	sn := &snapshotter{s: s, lg: s.lg.Named("snapshot"), cfg: s.cfg.Snapshot, dir: s.cfg.SnapshotDir()}
	for _, r := range sn.cfg.Recipients {
		rec, err := age.ParseX25519Recipient(r)
		if err != nil {
			return nil, fmt.Errorf("snapshot.recipients %q: %w", r, err)
		}
		sn.recipients = append(sn.recipients, rec)
	}
	if sn.cfg.Schedule != "" {
		sched, err := snapshot.ParseSchedule(sn.cfg.Schedule, sn.cfg.Jitter.D())
		if err != nil {
			return nil, fmt.Errorf("snapshot.schedule: %w", err)
		}
		sn.schedule = sched
	}
	if err := os.MkdirAll(sn.dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot.dir %q: %w", sn.dir, err)
	}
	// A save cut short by a crash (kill -9) leaves a .part and a plaintext
	// copy; no save runs yet, so they can go.
	if removed, err := snapshot.CleanStale(sn.dir); err != nil {
		return nil, fmt.Errorf("snapshot.dir %q: %w", sn.dir, err)
	} else if len(removed) > 0 {
		sn.lg.Info("removed what an interrupted snapshot left", zap.Strings("files", removed))
	}
	if list, err := snapshot.List(sn.dir); err == nil && len(list) > 0 {
		sn.last = &list[0]
		s.metrics.Snapshot.LastSuccess(list[0].CreatedAt)
		s.metrics.Snapshot.Kept(len(list))
	}
	return sn, nil
}

// run takes scheduled snapshots until ctx ends: a catch-up one once the
// member is ready if the newest is older than one interval, then one at
// every scheduled time.
func (sn *snapshotter) run(ctx context.Context, ready <-chan struct{}) error {
	if sn.schedule == nil {
		<-ctx.Done()
		return nil
	}
	select {
	case <-ready:
	case <-ctx.Done():
		return nil
	}
	var newest time.Time
	if l := sn.latest(); l != nil {
		newest = l.CreatedAt
	}
	if sn.schedule.Due(newest, time.Now()) {
		sn.take(ctx, "catch-up")
	}
	for {
		next := sn.schedule.Next(time.Now())
		sn.lg.Debug("next snapshot", zap.Time("at", next))
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
			sn.take(ctx, "scheduled")
		}
	}
}

func (sn *snapshotter) latest() *snapshot.Listed {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	return sn.last
}

// take runs one snapshot: before hook, save, after hook, retention. A
// second call while one runs gets errSnapshotRunning rather than queueing,
// so requests never pile up behind a slow disk.
func (sn *snapshotter) take(ctx context.Context, reason string) (snapshot.Listed, error) {
	sn.mu.Lock()
	if !sn.running.IsZero() {
		started := sn.running
		sn.mu.Unlock()
		return snapshot.Listed{}, fmt.Errorf("%w (started %s ago)", errSnapshotRunning, time.Since(started).Truncate(time.Second))
	}
	sn.running = time.Now()
	sn.mu.Unlock()
	defer func() {
		sn.mu.Lock()
		sn.running = time.Time{}
		sn.mu.Unlock()
	}()

	got, err := sn.save(ctx, reason)
	sn.mu.Lock()
	if err != nil {
		sn.lastErr = err.Error()
	} else {
		sn.last, sn.lastErr = &got, ""
	}
	sn.mu.Unlock()
	if err != nil {
		sn.s.metrics.Snapshot.Failed()
		sn.lg.Error("snapshot failed", zap.String("reason", reason), zap.Error(err))
		return snapshot.Listed{}, err
	}
	return got, nil
}

func (sn *snapshotter) save(ctx context.Context, reason string) (snapshot.Listed, error) {
	name := fmt.Sprintf("etcd-%s-%s", sn.s.cfg.Etcd.Name, time.Now().UTC().Format("20060102T150405.000Z"))
	env := []string{"ETCDVISOR_SNAPSHOT_DIR=" + sn.dir, "ETCDVISOR_SNAPSHOT_NAME=" + name, "ETCDVISOR_SNAPSHOT_REASON=" + reason}
	// A failed before hook (say, a volume that would not freeze) stops the
	// snapshot: its consistency guarantee did not hold.
	if err := sn.hook(ctx, "before", sn.cfg.Hooks.Before, env); err != nil {
		return snapshot.Listed{}, err
	}
	cli := sn.s.member.Client()
	if cli == nil {
		return snapshot.Listed{}, errors.New("the etcd member is not running")
	}
	sctx, cancel := context.WithTimeout(ctx, sn.cfg.Timeout.D())
	defer cancel()
	m, err := snapshot.Save(sctx, cli, "", snapshot.Options{
		Dir:        sn.dir,
		Name:       name,
		Compress:   sn.cfg.Compress,
		Recipients: sn.recipients,
		RateLimit:  int64(sn.cfg.RateLimit),
		Logger:     sn.lg,
	})
	if err != nil {
		return snapshot.Listed{}, fmt.Errorf("save: %w", err)
	}
	got := snapshot.Listed{Manifest: m, Path: sn.dir + "/" + m.File}
	took, _ := time.ParseDuration(m.Duration)
	sn.s.metrics.Snapshot.Succeeded(m.CreatedAt, took, m.Size, m.Revision)

	// The after hook (say, copying the file off the host) failing does not
	// make the snapshot bad; it is reported and counted.
	env = append(env, "ETCDVISOR_SNAPSHOT="+got.Path, "ETCDVISOR_SNAPSHOT_MANIFEST="+snapshot.ManifestPath(got.Path))
	if err := sn.hook(ctx, "after", sn.cfg.Hooks.After, env); err != nil {
		sn.lg.Error("snapshot kept, but its after hook failed", zap.String("snapshot", got.Path), zap.Error(err))
	}
	sn.retain()
	return got, nil
}

// retain applies the retention policy; it runs only after a good snapshot,
// and the policy never removes the newest.
func (sn *snapshotter) retain() {
	list, err := snapshot.List(sn.dir)
	if err != nil {
		sn.lg.Warn("retention skipped", zap.Error(err))
		return
	}
	entries := make([]snapshot.Entry, len(list))
	byName := map[string]snapshot.Listed{}
	for i, l := range list {
		entries[i] = snapshot.Entry{Name: l.File, CreatedAt: l.CreatedAt}
		byName[l.File] = l
	}
	r := sn.cfg.Retention
	keep, remove := snapshot.Policy{Keep: r.Keep, MaxAge: r.MaxAge.D(), Hourly: r.Hourly, Daily: r.Daily, Weekly: r.Weekly}.Apply(entries, time.Now())
	for _, e := range remove {
		if err := snapshot.Remove(byName[e.Name]); err != nil {
			sn.lg.Warn("retention could not remove a snapshot", zap.String("snapshot", e.Name), zap.Error(err))
			continue
		}
		sn.lg.Info("retention removed a snapshot", zap.String("snapshot", e.Name))
	}
	sn.s.metrics.Snapshot.Kept(len(keep))
}

// hook runs one configured command with a timeout; its output goes to the
// log, and its last lines into the error.
func (sn *snapshotter) hook(ctx context.Context, which string, argv []string, env []string) error {
	if len(argv) == 0 {
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, sn.cfg.Hooks.Timeout.D())
	defer cancel()
	cmd := exec.CommandContext(hctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if hctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("timed out after %s", sn.cfg.Hooks.Timeout)
	}
	if err != nil {
		sn.s.metrics.Snapshot.HookFailed(which)
		return fmt.Errorf("snapshot.hooks.%s %v: %w; output: %s", which, argv, err, lastLines(out.String(), 5))
	}
	sn.lg.Info("snapshot hook ran", zap.String("hook", which), zap.Strings("command", argv), zap.String("output", lastLines(out.String(), 5)))
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
