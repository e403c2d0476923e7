package etcdrun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/etcdvisor/etcdvisor/internal/config"
)

// Embedded runs etcd inside this process with go.etcd.io/etcd/server/v3/embed.
type Embedded struct {
	cfg *config.Config
	lg  *zap.Logger

	ready chan struct{}
	errc  chan error

	// grpcOpts are added to the member's gRPC servers (the fence gate).
	grpcOpts []grpc.ServerOption

	mu       sync.Mutex
	e        *embed.Etcd
	cli      *clientv3.Client
	gate     *callGate // every call of cli passes it; Stop closes it first
	stopping bool
	cancel   context.CancelFunc // ends the readiness wait
	done     chan struct{}      // closed when the watch goroutine returns
}

var _ Member = (*Embedded)(nil)

// NewEmbedded returns an embedded member for cfg that logs through lg.
// grpcOpts go to the member's client gRPC servers, after etcd's own.
func NewEmbedded(cfg *config.Config, lg *zap.Logger, grpcOpts ...grpc.ServerOption) *Embedded {
	return &Embedded{
		cfg:      cfg,
		lg:       lg,
		grpcOpts: grpcOpts,
		ready:    make(chan struct{}),
		errc:     make(chan error, 1),
	}
}

// EmbedConfig translates etcdvisor's config into etcd's, with etcd logging
// through lg.
func EmbedConfig(cfg *config.Config, lg *zap.Logger) (*embed.Config, error) {
	e := cfg.Etcd
	ec := embed.NewConfig()
	ec.Name = e.Name
	ec.Dir = e.DataDir
	ec.WalDir = e.WalDir
	var err error
	for _, f := range []struct {
		path string
		in   []string
		out  *[]url.URL
	}{
		{"etcd.listen-client-urls", e.ListenClientURLs, &ec.ListenClientUrls},
		{"etcd.advertise-client-urls", e.AdvertiseClientURLs, &ec.AdvertiseClientUrls},
		{"etcd.listen-peer-urls", e.ListenPeerURLs, &ec.ListenPeerUrls},
		{"etcd.initial-advertise-peer-urls", e.InitialAdvertisePeerURLs, &ec.AdvertisePeerUrls},
	} {
		if *f.out, err = parseURLs(f.in); err != nil {
			return nil, fmt.Errorf("%s: %w", f.path, err)
		}
	}
	ec.InitialCluster = cfg.InitialClusterOrSelf()
	ec.ClusterState = e.InitialClusterState
	ec.InitialClusterToken = e.InitialClusterToken
	ec.TickMs = uint(e.HeartbeatInterval.D() / time.Millisecond)
	ec.ElectionMs = uint(e.ElectionTimeout.D() / time.Millisecond)
	ec.SnapshotCount = e.SnapshotCount
	ec.QuotaBackendBytes = int64(e.QuotaBackendBytes)
	ec.MaxRequestBytes = uint(e.MaxRequestBytes)
	ec.AutoCompactionMode = e.AutoCompactionMode
	ec.AutoCompactionRetention = e.AutoCompactionRetention
	ec.ClientTLSInfo = tlsInfo(e.ClientTLS)
	ec.PeerTLSInfo = tlsInfo(e.PeerTLS)
	ec.ClientAutoTLS, ec.PeerAutoTLS = false, false
	ec.TlsMinVersion = e.TLSMinVersion
	ec.CipherSuites = e.CipherSuites
	// One logger for both: etcd's lines carry our fields and format.
	ec.Logger = "zap"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	return ec, nil
}

func tlsInfo(t config.TLS) transport.TLSInfo {
	info := transport.TLSInfo{
		CertFile:       t.CertFile,
		KeyFile:        t.KeyFile,
		TrustedCAFile:  t.TrustedCAFile,
		ClientCertAuth: t.ClientCertAuthOn(),
	}
	info.AllowedCNs = t.AllowedCN
	info.AllowedHostnames = t.AllowedHostname
	return info
}

func parseURLs(in []string) ([]url.URL, error) {
	out := make([]url.URL, 0, len(in))
	for _, s := range in {
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, *u)
	}
	return out, nil
}

// Start launches etcd. The data dir must belong to this member, and ports
// are checked first so that a port in use is reported with the URL that
// asked for it, rather than etcd's bare address.
func (m *Embedded) Start(ctx context.Context) error {
	if err := CheckDataDir(m.cfg); err != nil {
		return err
	}
	if err := checkListenURLs(m.cfg); err != nil {
		return err
	}
	ec, err := EmbedConfig(m.cfg, m.lg)
	if err != nil {
		return err
	}
	ec.GRPCAdditionalServerOptions = append(ec.GRPCAdditionalServerOptions, m.grpcOpts...)
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return fmt.Errorf("start etcd member %q: %w", m.cfg.Etcd.Name, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	gate := &callGate{}
	m.mu.Lock()
	m.e, m.cli, m.gate, m.cancel, m.done = e, newInProcessClient(e.Server, gate), gate, cancel, make(chan struct{})
	m.mu.Unlock()
	go m.watch(wctx)
	return nil
}

// watch closes Ready once the member serves linearizable reads and turns
// an unexpected stop into an error on Err.
func (m *Embedded) watch(ctx context.Context) {
	defer close(m.done)
	// etcd that stops on its own (this member removed from the cluster,
	// its storage failed) closes its backend as it stops: from its first
	// step on, in-process calls are refused, as after Stop.
	go func() {
		select {
		case <-m.e.Server.StoppingNotify():
			m.gate.refuse()
		case <-ctx.Done():
		}
	}()
	go func() {
		select {
		case <-m.e.Server.ReadyNotify():
		case <-ctx.Done():
			return
		}
		err := waitLinearizable(ctx, m.cli, func(err error) {
			m.lg.Debug("member not serving linearizable reads yet", zap.Error(err))
		})
		if err == nil {
			m.lg.Info("member serves linearizable reads")
			close(m.ready)
		}
	}()
	var err error
	select {
	case err = <-m.e.Err():
		if err == nil {
			err = errors.New("etcd closed its error channel")
		}
	case <-m.e.Server.StopNotify():
		// etcd stops itself when, for example, this member is removed
		// from the cluster or its raft storage fails.
		err = errors.New("etcd server stopped on its own; see etcd's log lines above")
	case <-ctx.Done():
		return
	}
	m.mu.Lock()
	stopping := m.stopping
	m.mu.Unlock()
	if !stopping {
		m.errc <- err
	}
}

// Ready is closed once the member serves linearizable reads.
func (m *Embedded) Ready() <-chan struct{} { return m.ready }

// Err delivers a fatal error of the running member.
func (m *Embedded) Err() <-chan error { return m.errc }

// Server is the running etcd server, for what only it can tell (when a
// new term's first entry is applied); nil before Start.
func (m *Embedded) Server() *etcdserver.EtcdServer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e == nil {
		return nil
	}
	return m.e.Server
}

// Client is an in-process client: no network, no TLS, no auth round trips.
func (m *Embedded) Client() *clientv3.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cli
}

// Stop closes etcd. etcd's own stop transfers leadership to the most
// caught-up follower when this member leads, so followers need not wait
// for an election timeout.
func (m *Embedded) Stop(ctx context.Context) error {
	m.mu.Lock()
	if m.e == nil || m.stopping {
		m.mu.Unlock()
		return ErrStopped
	}
	m.stopping = true
	e, cli, gate, cancel, done := m.e, m.cli, m.gate, m.cancel, m.done
	m.mu.Unlock()

	cancel()
	<-done
	// No in-process call may reach etcd once it closes. A call stuck on a
	// hung disk gets half of the time left at most: the close goes ahead.
	gctx, gcancel := ctx, context.CancelFunc(func() {})
	if dl, ok := ctx.Deadline(); ok {
		gctx, gcancel = context.WithTimeout(ctx, time.Until(dl)/2)
	}
	err := gate.close(gctx)
	gcancel()
	if err != nil {
		m.lg.Warn("in-process calls still under way; closing the member anyway", zap.Error(err))
	}
	closed := make(chan struct{})
	go func() {
		cli.Close()
		select {
		case <-e.Server.ReadyNotify():
		default:
			// etcd's Close first waits for its client servers, which start
			// only once the member is ready. A member that never got there
			// (no quorum yet) must stop its server first, or Close hangs.
			e.Server.Stop()
		}
		e.Close()
		close(closed)
	}()
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop etcd member: %w", ctx.Err())
	}
}

// checkListenURLs binds each listen URL's address once, so a port that is
// taken is reported with the config field and URL that asked for it.
func checkListenURLs(cfg *config.Config) error {
	for _, f := range []struct {
		path string
		urls []string
	}{
		{"etcd.listen-client-urls", cfg.Etcd.ListenClientURLs},
		{"etcd.listen-peer-urls", cfg.Etcd.ListenPeerURLs},
	} {
		for _, s := range f.urls {
			u, err := url.Parse(s)
			if err != nil {
				return fmt.Errorf("%s %q: %w", f.path, s, err)
			}
			ln, err := net.Listen("tcp", u.Host)
			if err != nil {
				if errors.Is(err, syscall.EADDRINUSE) {
					return fmt.Errorf("%s %q: address already in use: another process listens on %s (is another etcd running?)", f.path, s, u.Host)
				}
				return fmt.Errorf("%s %q: cannot listen: %w", f.path, s, err)
			}
			ln.Close()
		}
	}
	return nil
}
