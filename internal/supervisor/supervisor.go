// Package supervisor is the etcdvisor daemon: it runs the local etcd
// member, the control socket, the metrics listener and the systemd
// notifier as one run group, and stops them in order.
package supervisor

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oklog/run"
	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/control"
	"github.com/etcdvisor/etcdvisor/internal/endpoints"
	"github.com/etcdvisor/etcdvisor/internal/etcdrun"
	"github.com/etcdvisor/etcdvisor/internal/health"
	"github.com/etcdvisor/etcdvisor/internal/metrics"
	"github.com/etcdvisor/etcdvisor/internal/notify"
	"github.com/etcdvisor/etcdvisor/internal/snapshot"
	"github.com/etcdvisor/etcdvisor/internal/version"
)

// stopTimeout bounds etcd's graceful stop, leadership transfer included;
// systemd's TimeoutStopSec is longer so this fires first.
const stopTimeout = 30 * time.Second

// registryTTL is the lease of this etcdvisor's registry record: how long
// peers take to notice that it died.
const registryTTL = 10 * time.Second

// certCheckInterval is how often certificate expiry is re-read: files may
// be rotated under a running member, and expiry moves slowly.
const certCheckInterval = 10 * time.Minute

// Supervisor is one running daemon.
type Supervisor struct {
	cfg     *config.Config
	lg      *zap.Logger
	member  etcdrun.Member
	snaps   *snapshotter
	watch   *watch
	reg     *cluster.Registry // set once the member has started
	metrics *metrics.Metrics
	notify  *notify.Notifier
	started time.Time
	run     string // this process's run ID: tells a restarted etcdvisor from the one that exited

	// tickHook, when set, runs at the start of every loop tick; tests use
	// it to stall the loop and watch the watchdog pings stop.
	tickHook func()

	mu     sync.Mutex
	phase  string
	warned map[string]bool
	lastSt api.Status // the loop's latest status, for readers that must not block

	unreach        unreachable              // owned by the loop
	abandon        abandoned                // owned by the loop
	removing       atomic.Bool              // an automatic removal runs
	unreachableFor map[string]time.Duration // the loop's latest verdicts, by member name

	// memberUp is set once member, reg and the run group exist; control
	// routes that need them answer 503 until then.
	memberUp atomic.Bool
	// joinNote says where a join stands before the member starts.
	joinNote atomic.Pointer[string]

	regMu   sync.Mutex
	regLast map[string]cluster.Record // the last registry read that finished
	regAt   time.Time
}

// Run runs the daemon until ctx ends, SIGINT or SIGTERM arrives (nil), or
// the member fails (an error). cfg must already be valid.
func Run(ctx context.Context, cfg *config.Config, lg *zap.Logger) error {
	s := &Supervisor{
		cfg:     cfg,
		lg:      lg,
		notify:  notify.New(lg.Named("notify")),
		started: time.Now(),
		run:     rand.Text(),
		phase:   api.PhaseStarting,
	}
	s.metrics = metrics.New(version.Version, version.Etcd, version.Go, s.started)
	lg.Info("starting etcdvisor",
		zap.String("version", version.Version),
		zap.String("etcd-version", version.Etcd),
		zap.String("config", orDefaults(cfg.File())),
		zap.String("name", cfg.Etcd.Name),
		zap.String("data-dir", cfg.Etcd.DataDir),
	)

	// 0. Certificates: a bad file fails here, naming it, instead of in the
	//    middle of etcd's start.
	if err := s.preflightTLS(); err != nil {
		return err
	}
	if e := cfg.Etcd; e.Insecure && !e.PeerTLS.Enabled() {
		lg.Warn("peer traffic is plain http: every key, Kubernetes secrets included, crosses the network unencrypted (etcd.insecure is true)")
	}

	// 1. The data dir and its lock come first: nothing else may touch the
	//    socket or etcd's files while another etcdvisor owns them.
	if err := makeDataDir(cfg.Etcd.DataDir); err != nil {
		return err
	}
	lock, err := lockDataDir(cfg.LockPath())
	if err != nil {
		return fmt.Errorf("etcd.data-dir %q: %w", cfg.Etcd.DataDir, err)
	}
	defer lock.release()
	if s.snaps, err = newSnapshotter(s); err != nil {
		return err
	}
	if s.watch, err = newWatch(s); err != nil {
		return err
	}

	// 2. Listeners before the member, so a taken port fails fast and the
	//    socket answers "starting" while etcd loads a large DB.
	//    Both serve from here on: a join can wait a long time for the
	//    membership lock, and status says so meanwhile.
	ctl, ctlLn, err := s.controlServer()
	if err != nil {
		return err
	}
	defer ctlLn.Close()
	ctlDone := serve(ctl.Serve, ctlLn)
	defer shutdown(ctl.Shutdown)
	var metricsSrv *metrics.Server
	var metricsDone <-chan error
	if cfg.Metrics.Listen != "" {
		metricsLn, err := metrics.Listen(cfg.Metrics.Listen)
		if err != nil {
			return err
		}
		defer metricsLn.Close()
		metricsSrv = metrics.NewServer(lg.Named("metrics"), s.metrics.Gatherer(), s.ready)
		metricsDone = serve(metricsSrv.Serve, metricsLn)
		defer shutdown(metricsSrv.Shutdown)
	}

	// 3. A join, when configured and the data dir holds no member yet:
	//    under the cluster's membership lock, this member becomes a learner
	//    and the member below starts with the cluster it joins. SIGINT or
	//    SIGTERM ends a wait for the lock cleanly.
	jctx, stopJoin := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	joining, err := s.prepareJoin(jctx)
	signalled := jctx.Err() != nil && ctx.Err() == nil
	stopJoin()
	if err != nil {
		if signalled {
			lg.Info("etcdvisor stopped before its member started", zap.String("reason", "signal"), zap.NamedError("join", err))
			return nil
		}
		return fmt.Errorf("join: %w", err)
	}

	// 4. The member.
	embedded := etcdrun.NewEmbedded(cfg, lg.Named("etcd"), s.watch.gate.ServerOptions()...)
	s.member = embedded
	if err := s.member.Start(ctx); err != nil {
		if joining != nil {
			joining.close()
		}
		return err
	}
	// A write lost to a leader change is given up two heartbeats after
	// the new term began: enough for a healthy new leader to commit one
	// it took.
	s.watch.gate.Attach(embedded.Server(), 2*cfg.Etcd.HeartbeatInterval.D())
	s.watch.mover.self = embedded.Server()

	var g run.Group
	// Signals: SIGINT or SIGTERM ends the group cleanly.
	{
		execute, interrupt := run.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM)
		g.Add(execute, interrupt)
	}
	// The supervisor loop: readiness, status line, watchdog pings. Its
	// interrupt runs first and tells systemd the stop has begun.
	{
		lctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			return s.loop(lctx, s.member.Ready())
		}, func(error) {
			s.setPhase(api.PhaseStopping)
			s.notify.Stopping("stopping: closing etcd member")
			cancel()
		})
	}
	// The registry: this etcdvisor's record under /etcdvisor/v1/nodes/, on
	// a lease. Interrupted before the member stops, and waited for, so the
	// lease is revoked while etcd still serves and peers see the stop now.
	{
		s.reg = cluster.NewRegistry(s.member.Client(), registryTTL, lg.Named("registry"))
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		g.Add(func() error {
			defer close(done)
			select {
			case <-s.member.Ready():
			case <-rctx.Done():
				return nil
			}
			return s.reg.Run(rctx)
		}, func(error) {
			cancel()
			<-done
		})
	}
	// The starvation watch: samples, judges, moves leadership off a
	// critical leader; a stalled disk ends the group with an error. It is
	// stopped, and waited for, before the member: a judgement reads the
	// registry through the in-process client, and a read of a closed
	// member's backend crashes the process. The wait is bounded, because
	// on a stalled disk that read never returns either.
	{
		wctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		g.Add(func() error {
			defer close(done)
			return s.watch.run(wctx, s.member.Ready())
		}, func(error) {
			cancel()
			select {
			case <-done:
			case <-time.After(2 * cfg.Etcd.ElectionTimeout.D()):
				lg.Warn("the starvation watch did not stop in time; stopping the member anyway")
			}
		})
	}
	// The rest of a join: promote the learner once it has caught up. Its
	// failure (a learner that makes no progress, removed again) ends the
	// daemon with an error.
	if joining != nil {
		jctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			if err := joining.finish(jctx); err != nil {
				return err
			}
			<-jctx.Done()
			return nil
		}, func(error) {
			cancel()
		})
	}
	// Rolling operations: this member's turn ends the group with
	// ErrRestart, after it has handed leadership away.
	{
		rl := &roller{s: s, lg: lg.Named("rolling")}
		rctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			return rl.run(rctx, s.member.Ready())
		}, func(error) {
			cancel()
		})
	}
	// Scheduled snapshots. Interrupted before the member stops, so a
	// snapshot in progress is cut short rather than racing the close.
	{
		sctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			return s.snaps.run(sctx, s.member.Ready())
		}, func(error) {
			cancel()
		})
	}
	// The member: its error ends the group; its interrupt stops etcd,
	// which hands leadership away if this member leads. The socket still
	// answers "stopping" meanwhile, because it is interrupted after this.
	{
		stopped := make(chan struct{})
		g.Add(func() error {
			select {
			case err := <-s.member.Err():
				lg.Error("etcd member failed; stopping etcdvisor", zap.Error(err))
				return fmt.Errorf("etcd member failed: %w", err)
			case <-stopped:
				return nil
			}
		}, func(err error) {
			timeout := stopTimeout
			if errors.Is(err, errStalled) || s.watch.stalled() {
				// A graceful stop waits on the hung disk; do not wait long.
				timeout = 2 * cfg.Etcd.ElectionTimeout.D()
			}
			sctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := s.member.Stop(sctx); err != nil && !errors.Is(err, etcdrun.ErrStopped) {
				lg.Warn("etcd member did not stop cleanly", zap.Error(err))
			} else {
				lg.Info("etcd member stopped")
			}
			close(stopped)
		})
	}
	// The control socket, serving since step 2.
	g.Add(func() error { return <-ctlDone }, func(error) { shutdown(ctl.Shutdown) })
	// The metrics listener, last, so a final scrape sees the stop.
	if metricsSrv != nil {
		g.Add(func() error { return <-metricsDone }, func(error) { shutdown(metricsSrv.Shutdown) })
	}

	s.memberUp.Store(true)
	err = g.Run()
	switch {
	case errors.Is(err, run.ErrSignal):
		lg.Info("etcdvisor stopped", zap.String("reason", err.Error()))
		return nil
	case errors.Is(err, context.Canceled):
		lg.Info("etcdvisor stopped", zap.String("reason", "context canceled"))
		return nil
	case err != nil:
		return err
	}
	// An actor ended without an error, which none should do on its own.
	return errors.New("etcdvisor stopped unexpectedly: a part of the daemon ended on its own")
}

// loop waits for the member to serve, then keeps the status line and
// metrics fresh and pings systemd's watchdog. The pings come from this
// loop and nowhere else: if it stalls, they stop and systemd restarts us.
func (s *Supervisor) loop(ctx context.Context, ready <-chan struct{}) error {
	tick := time.Second
	wd := s.notify.WatchdogInterval()
	if wd > 0 && wd < tick {
		tick = wd
	}
	s.notify.Status("starting: waiting for the etcd member to serve")
	t := time.NewTicker(tick)
	defer t.Stop()
	var lastPing, lastCertCheck time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ready:
			ready = nil // fires once
			s.setPhase(api.PhaseReady)
			s.metrics.SetMemberReady(true)
			st := s.status(ctx)
			s.lg.Info("etcd member ready", zap.String("member-id", st.MemberID), zap.String("cluster-id", st.ClusterID))
			s.observe(st)
			s.notify.Ready(statusLine(st))
		case <-t.C:
			if s.tickHook != nil {
				s.tickHook()
			}
			if s.getPhase() == api.PhaseReady {
				st := s.status(ctx)
				s.observe(st)
				s.checkUnreachable(st)
				s.checkAbandoned(st)
				s.notify.Status(statusLine(st))
			}
			if time.Since(lastCertCheck) >= certCheckInterval {
				s.recordCertExpiry()
				lastCertCheck = time.Now()
			}
		}
		if wd > 0 && time.Since(lastPing) >= wd {
			s.notify.Watchdog()
			lastPing = time.Now()
		}
	}
}

// observe turns a fresh status into metrics, the endpoints file and the
// peer list of the watch.
func (s *Supervisor) observe(st api.Status) {
	s.mu.Lock()
	s.lastSt = st
	s.mu.Unlock()
	s.watch.setPeers(st)
	s.publish(st)
	s.metrics.SetMemberReady(st.Error == "")
	if st.Error != "" {
		return
	}
	voters, learners := 0, 0
	for _, m := range st.Members {
		if m.IsLearner {
			learners++
		} else {
			voters++
		}
	}
	s.metrics.SetCluster(voters, learners, st.IsLeader, st.LeaderID != "")
	if path := s.cfg.Endpoints.File; path != "" && len(st.Members) > 0 {
		servers, err := endpoints.EtcdServers(st.Members)
		if err != nil {
			return
		}
		changed, err := endpoints.WriteFile(path, []byte(servers+"\n"))
		switch {
		case err != nil:
			s.warnOnce("endpoints", "cannot write the endpoints file", zap.String("path", path), zap.Error(err))
		case changed:
			s.lg.Info("endpoints file updated", zap.String("path", path), zap.String("etcd-servers", servers))
		}
	}
}

// warnOnce logs a problem the loop would otherwise repeat every second,
// until it goes away.
func (s *Supervisor) warnOnce(key, msg string, fields ...zap.Field) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.warned == nil {
		s.warned = map[string]bool{}
	}
	if !s.warned[key] {
		s.warned[key] = true
		s.lg.Warn(msg, fields...)
	}
}

func (s *Supervisor) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
	s.metrics.SetPhase(p)
}

func (s *Supervisor) getPhase() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phase
}

// lastStatus is the supervisor loop's latest status of the member.
func (s *Supervisor) lastStatus() api.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSt
}

// ready answers /readyz: the member must not be critical and must serve a
// linearizable read now. A critical member answers 503 so a load balancer
// in front of the cluster sends clients elsewhere.
func (s *Supervisor) ready(ctx context.Context) error {
	if p := s.getPhase(); p != api.PhaseReady {
		return fmt.Errorf("etcdvisor is %s", p)
	}
	if r := s.watch.report(); r.State == health.Critical {
		why := "critical"
		if len(r.Reasons) > 0 {
			why = r.Reasons[0].Text
		}
		return fmt.Errorf("member is critical: %s", why)
	}
	if _, err := s.member.Client().Get(ctx, "health"); err != nil {
		return fmt.Errorf("linearizable read failed: %w", err)
	}
	return nil
}

// controlServer opens the control socket and registers the /v1 routes.
func (s *Supervisor) controlServer() (*control.Server, net.Listener, error) {
	gid, mode := -1, os.FileMode(0o600)
	if name := s.cfg.Control.Group; name != "" {
		grp, err := user.LookupGroup(name)
		if err != nil {
			return nil, nil, fmt.Errorf("control.group %q: %w", name, err)
		}
		if gid, err = strconv.Atoi(grp.Gid); err != nil {
			return nil, nil, fmt.Errorf("control.group %q: gid %q is not a number", name, grp.Gid)
		}
		mode = 0o660
	}
	path := s.cfg.SocketPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, nil, fmt.Errorf("control.socket %q: %w", path, err)
	}
	ln, err := control.Listen(path, mode, gid)
	if err != nil {
		return nil, nil, fmt.Errorf("control.socket %q: %w", path, err)
	}
	srv := control.NewServer(s.lg.Named("control"), control.Policy{UIDs: []uint32{uint32(os.Geteuid())}, GID: gid})
	srv.Handle("GET", "/v1/status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		control.WriteJSON(w, http.StatusOK, s.status(ctx))
	})
	srv.Handle("GET", "/v1/health", func(w http.ResponseWriter, r *http.Request) {
		rep := s.watch.report()
		if rep.At.IsZero() {
			control.WriteError(w, http.StatusServiceUnavailable, "the starvation watch has no report yet (it starts once the member serves)")
			return
		}
		control.WriteJSON(w, http.StatusOK, rep)
	})
	srv.Handle("POST", "/v1/snapshots", func(w http.ResponseWriter, r *http.Request) {
		if s.getPhase() != api.PhaseReady {
			control.WriteError(w, http.StatusServiceUnavailable, "the etcd member is not ready (%s)", s.getPhase())
			return
		}
		// The snapshot outlives a CLI that gives up waiting: it has its
		// own timeout, and a half-taken snapshot helps nobody.
		got, err := s.snaps.take(context.WithoutCancel(r.Context()), "request")
		switch {
		case errors.Is(err, errSnapshotRunning):
			control.WriteError(w, http.StatusConflict, "%v", err)
		case err != nil:
			control.WriteError(w, http.StatusInternalServerError, "snapshot failed: %v", err)
		default:
			control.WriteJSON(w, http.StatusOK, got)
		}
	})
	srv.Handle("GET", "/v1/snapshots", func(w http.ResponseWriter, r *http.Request) {
		list, err := snapshot.List(s.snaps.dir)
		if err != nil {
			control.WriteError(w, http.StatusInternalServerError, "%v", err)
			return
		}
		control.WriteJSON(w, http.StatusOK, map[string]any{"dir": s.snaps.dir, "snapshots": list})
	})
	srv.Handle("GET", "/v1/members", s.needsMember(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*cluster.ProbeTimeout)
		defer cancel()
		list, err := s.members(ctx)
		if err != nil {
			control.WriteError(w, http.StatusServiceUnavailable, "list members: %v", err)
			return
		}
		control.WriteJSON(w, http.StatusOK, s.withRegistry(ctx, list))
	}))
	srv.Handle("POST", "/v1/members/remove", s.needsMember(func(w http.ResponseWriter, r *http.Request) {
		var req api.RemoveRequest
		if err := control.DecodeJSON(r, &req); err != nil {
			control.WriteError(w, http.StatusBadRequest, "%v", err)
			return
		}
		got, err := s.removeMember(r.Context(), req)
		if err != nil {
			control.WriteError(w, http.StatusConflict, "%v", err)
			return
		}
		control.WriteJSON(w, http.StatusOK, got)
	}))
	srv.Handle("POST", "/v1/members", s.needsMember(func(w http.ResponseWriter, r *http.Request) {
		var req api.AddRequest
		if err := control.DecodeJSON(r, &req); err != nil {
			control.WriteError(w, http.StatusBadRequest, "%v", err)
			return
		}
		got, err := s.addMember(r.Context(), req)
		if err != nil {
			control.WriteError(w, http.StatusConflict, "%v", err)
			return
		}
		control.WriteJSON(w, http.StatusOK, got)
	}))
	srv.Handle("POST", "/v1/cluster/rolling-restart", s.needsMember(func(w http.ResponseWriter, r *http.Request) {
		var req api.RollingRequest
		if err := control.DecodeJSON(r, &req); err != nil {
			control.WriteError(w, http.StatusBadRequest, "%v", err)
			return
		}
		who := fmt.Sprintf("etcdvisor cluster rolling-restart on member %s", s.cfg.Etcd.Name)
		var got cluster.Rolling
		var err error
		if req.Abort {
			got, err = s.abortRolling(r.Context(), who)
		} else {
			got, err = s.startRolling(r.Context(), who)
		}
		if err != nil {
			control.WriteError(w, http.StatusConflict, "%v", err)
			return
		}
		control.WriteJSON(w, http.StatusOK, got)
	}))
	srv.Handle("GET", "/v1/cluster", s.needsMember(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		got, err := s.clusterStatus(ctx)
		if err != nil {
			control.WriteError(w, http.StatusServiceUnavailable, "%v", err)
			return
		}
		control.WriteJSON(w, http.StatusOK, got)
	}))
	s.lg.Info("serving control socket", zap.String("path", path), zap.Stringer("mode", mode))
	return srv, ln, nil
}

// serve runs a server on ln from now on; its error arrives on the channel.
func serve(fn func(net.Listener) error, ln net.Listener) <-chan error {
	done := make(chan error, 1)
	go func() { done <- fn(ln) }()
	return done
}

// shutdown stops a server, letting requests in flight finish for a while.
// A second call, from a deferred cleanup, does nothing more.
func shutdown(fn func(context.Context) error) {
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fn(sctx)
}

// needsMember answers 503 until the member exists: before it starts (a
// join waiting for the membership lock, say) only status, health and the
// snapshot list can answer.
func (s *Supervisor) needsMember(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.memberUp.Load() {
			control.WriteError(w, http.StatusServiceUnavailable, "the etcd member has not started yet (%s)", s.startingNote())
			return
		}
		h(w, r)
	}
}

// makeDataDir creates the data dir 0700, as etcd wants it, and says
// plainly when this user cannot.
func makeDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("etcd.data-dir %q: cannot create it: %w (choose a dir this user (uid %d) can write with --data-dir)", dir, err, os.Geteuid())
	}
	probe, err := os.CreateTemp(dir, ".etcdvisor-write-test-*")
	if err != nil {
		return fmt.Errorf("etcd.data-dir %q: not writable by uid %d: %w (fix its owner or mode, or choose another --data-dir)", dir, os.Geteuid(), err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

func orDefaults(file string) string {
	if file == "" {
		return "(defaults)"
	}
	return file
}
