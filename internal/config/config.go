// Package config holds etcdvisor's configuration: the YAML schema, its
// defaults, strict decoding and validation whose errors name the field.
package config

import (
	"os"
	"path/filepath"
	"time"
)

// Well-known places, used when no config or flag says otherwise.
const (
	// DefaultFile is read when present and no --config is given.
	DefaultFile = "/etc/etcdvisor/etcdvisor.yaml"
	// DefaultUserDataDir is the data dir of a user who is not root: it
	// works at once, in the current directory.
	DefaultUserDataDir = "etcdvisor-data"
	// DefaultRootDataDir is the data dir of root, as under systemd.
	DefaultRootDataDir = "/var/lib/etcdvisor"
	// SocketName is the control socket's file name inside the data dir.
	SocketName = "etcdvisor.sock"
	// LockName is the lock file that keeps a second etcdvisor off the data dir.
	LockName = "etcdvisor.lock"
	// SnapshotDirName is the default snapshot dir inside the data dir.
	SnapshotDirName = "snapshots"
)

// Config is the whole etcdvisor configuration file.
type Config struct {
	Log        Log        `yaml:"log"`
	Control    Control    `yaml:"control"`
	Metrics    Metrics    `yaml:"metrics"`
	Endpoints  Endpoints  `yaml:"endpoints"`
	Snapshot   Snapshot   `yaml:"snapshot"`
	Health     Health     `yaml:"health"`
	Join       Join       `yaml:"join"`
	Membership Membership `yaml:"membership"`
	Etcd       Etcd       `yaml:"etcd"`

	// src remembers where each value came from, for error messages.
	src source
}

// Log configures etcdvisor's logger, which etcd shares.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Control configures the local control socket.
type Control struct {
	// Socket is the control socket's path; empty means next to the data.
	Socket string `yaml:"socket"`
	// Group may use the socket besides root and the daemon's user; the
	// socket is then mode 0660.
	Group string `yaml:"group"`
}

// Metrics configures the Prometheus listener.
type Metrics struct {
	Listen string `yaml:"listen"`
}

// Endpoints configures the file that tells kube-apiserver (or a wrapper,
// or a load balancer's reload hook) where etcd is.
type Endpoints struct {
	// File, when set, is rewritten atomically with the --etcd-servers
	// value whenever the member list changes.
	File string `yaml:"file"`
}

// Snapshot configures local snapshots of the member.
type Snapshot struct {
	// Dir holds the snapshots and their manifests; empty means
	// <etcd.data-dir>/snapshots. A separate disk is better.
	Dir string `yaml:"dir"`
	// Schedule is a cron expression ("0 * * * *") or an interval
	// ("@every 30m"); empty takes snapshots only on request.
	Schedule string `yaml:"schedule"`
	// Jitter delays each scheduled snapshot by a random amount up to this,
	// so members started together do not snapshot together.
	Jitter Duration `yaml:"jitter"`
	// Compress compresses snapshots with zstd.
	Compress bool `yaml:"compress"`
	// Recipients are age public keys ("age1..."); snapshots are encrypted
	// to them, so this host can write backups it cannot read.
	Recipients List `yaml:"recipients"`
	// RateLimit caps how fast a snapshot is read from etcd (bytes per
	// second), so it does not starve the member's own disk; 0: no limit.
	RateLimit ByteSize `yaml:"rate-limit"`
	// Timeout bounds one snapshot, hooks excluded.
	Timeout Duration `yaml:"timeout"`
	// Retention decides which snapshots are removed after a good one.
	Retention Retention `yaml:"retention"`
	// Hooks run before and after every snapshot.
	Hooks Hooks `yaml:"hooks"`
}

// Retention keeps snapshots by count, age and hourly/daily/weekly
// thinning; the newest good snapshot is never removed.
type Retention struct {
	Keep   int      `yaml:"keep"`
	MaxAge Duration `yaml:"max-age"`
	Hourly int      `yaml:"hourly"`
	Daily  int      `yaml:"daily"`
	Weekly int      `yaml:"weekly"`
}

// Hooks are commands (argv lists, no shell) run around a snapshot, with the
// snapshot's path and manifest in the environment.
type Hooks struct {
	Before  Command  `yaml:"before"`
	After   Command  `yaml:"after"`
	Timeout Duration `yaml:"timeout"`
}

// Health configures the starvation watch: what it samples, when it calls
// this member degraded or critical, and what it does about a critical one.
// A zero threshold is derived from etcd's heartbeat interval and election
// timeout (see Thresholds in internal/health).
type Health struct {
	// Interval is how often the watch judges the samples.
	Interval Duration `yaml:"interval"`
	// ProbeInterval is how often the fsync probe writes and syncs.
	ProbeInterval Duration `yaml:"probe-interval"`
	// Window is how far back latency quantiles look.
	Window Duration `yaml:"window"`
	// RecoverAfter is how long a better state must hold before the watch
	// reports it, so the state does not flap.
	RecoverAfter Duration `yaml:"recover-after"`

	FsyncDegraded         Duration `yaml:"fsync-degraded"`
	FsyncCritical         Duration `yaml:"fsync-critical"`
	BackendCommitDegraded Duration `yaml:"backend-commit-degraded"`
	BackendCommitCritical Duration `yaml:"backend-commit-critical"`
	PeerRTTDegraded       Duration `yaml:"peer-rtt-degraded"`
	PeerRTTCritical       Duration `yaml:"peer-rtt-critical"`
	// Pressure limits are shares of time (0..1) that tasks were stalled
	// (PSI: io and memory "full", cpu "some") over the last interval;
	// above one, the member is degraded.
	IOPressureDegraded     float64 `yaml:"io-pressure-degraded"`
	CPUPressureDegraded    float64 `yaml:"cpu-pressure-degraded"`
	MemoryPressureDegraded float64 `yaml:"memory-pressure-degraded"`
	// FsyncInFlightCritical: one probe fsync outstanding this long makes
	// the member critical at once, without waiting for it to return.
	FsyncInFlightCritical Duration `yaml:"fsync-in-flight-critical"`
	// StallAfter: an fsync (probe or etcd's WAL) outstanding this long
	// means the disk is stalled.
	StallAfter Duration `yaml:"stall-after"`
	// StallExitAfter: stalled this long, etcdvisor exits non-zero so
	// systemd restarts it. 0 derives it; a negative value never exits.
	StallExitAfter Duration `yaml:"stall-exit-after"`

	// LeaderMove moves leadership off this member while it leads and is
	// critical.
	LeaderMove bool `yaml:"leader-move"`
	// LeaderMoveInterval is the least time between two moves.
	LeaderMoveInterval Duration `yaml:"leader-move-interval"`
	// Fence refuses client requests with a retryable error while this
	// member is critical, so clients move to healthy members.
	Fence bool `yaml:"fence"`
}

// Join adds this member to a running cluster when its data dir holds no
// member yet: under the cluster's membership lock, after a pre-flight and
// a snapshot, as a learner that is promoted once it has caught up.
type Join struct {
	// Endpoints are client URLs of the running cluster's members.
	Endpoints URLList `yaml:"endpoints"`
	// Replaces names a member to remove first (a failed one).
	Replaces string `yaml:"replaces"`
	// Force lets Replaces name a member that is still healthy.
	Force bool `yaml:"force"`
	// LearnerTimeout: a learner that makes no progress this long is removed
	// again and the join fails.
	LearnerTimeout Duration `yaml:"learner-timeout"`
	// SkipSnapshot skips the snapshot of the cluster taken before the
	// first change.
	SkipSnapshot bool `yaml:"skip-snapshot"`
}

// Membership is this etcdvisor's part in cluster-wide membership policy.
type Membership struct {
	// RemoveUnreachableAfter: a member unreachable this long (no live
	// etcdvisor in the registry, no answer on its peer URL) is removed by
	// the leader's etcdvisor, within the safety rules. 0, the default,
	// leaves removal to the operator.
	RemoveUnreachableAfter Duration `yaml:"remove-unreachable-after"`
	// RemoveAbandonedLearnerAfter: a learner present this long while no
	// one holds the membership lock (a live joiner holds it from adding its
	// learner to promoting it) was left by a joiner that died; the leader's
	// etcdvisor removes it, so joins and rolling restarts can go on. 0: off.
	RemoveAbandonedLearnerAfter Duration `yaml:"remove-abandoned-learner-after"`
}

// Joining is whether join is configured.
func (j Join) Joining() bool { return len(j.Endpoints) > 0 }

// SnapshotDir is where snapshots live: snapshot.dir, or data-dir/snapshots.
func (c *Config) SnapshotDir() string {
	if c.Snapshot.Dir != "" {
		return c.Snapshot.Dir
	}
	return filepath.Join(c.Etcd.DataDir, SnapshotDirName)
}

// Etcd configures the local etcd member. Names and meanings follow etcd's
// own flags so an operator's knowledge carries over.
type Etcd struct {
	Name    string `yaml:"name"`
	DataDir string `yaml:"data-dir"`
	WalDir  string `yaml:"wal-dir"`

	ListenClientURLs         URLList `yaml:"listen-client-urls"`
	AdvertiseClientURLs      URLList `yaml:"advertise-client-urls"`
	ListenPeerURLs           URLList `yaml:"listen-peer-urls"`
	InitialAdvertisePeerURLs URLList `yaml:"initial-advertise-peer-urls"`

	InitialCluster      string `yaml:"initial-cluster"`
	InitialClusterState string `yaml:"initial-cluster-state"`
	InitialClusterToken string `yaml:"initial-cluster-token"`

	HeartbeatInterval Duration `yaml:"heartbeat-interval"`
	ElectionTimeout   Duration `yaml:"election-timeout"`

	SnapshotCount     uint64   `yaml:"snapshot-count"`
	QuotaBackendBytes ByteSize `yaml:"quota-backend-bytes"`
	MaxRequestBytes   ByteSize `yaml:"max-request-bytes"`

	AutoCompactionMode      string `yaml:"auto-compaction-mode"`
	AutoCompactionRetention string `yaml:"auto-compaction-retention"`

	ClientTLS TLS `yaml:"client-transport-security"`
	PeerTLS   TLS `yaml:"peer-transport-security"`
	// TLSMinVersion is the oldest TLS version accepted on either transport.
	TLSMinVersion string `yaml:"tls-min-version"`
	// CipherSuites restricts TLS 1.2 cipher suites (Go's names); empty
	// keeps Go's secure defaults. TLS 1.3 suites are not configurable.
	CipherSuites List `yaml:"cipher-suites"`
	// Insecure allows plain http between the members of a multi-member
	// cluster. It exists so that choice is made on purpose.
	Insecure bool `yaml:"insecure"`
}

// TLS is one transport's x509 material. Empty means plain http.
type TLS struct {
	CertFile      string `yaml:"cert-file"`
	KeyFile       string `yaml:"key-file"`
	TrustedCAFile string `yaml:"trusted-ca-file"`
	// ClientCertAuth requires callers to present a certificate signed by
	// trusted-ca-file. Unset, it is on whenever cert-file is set.
	ClientCertAuth *bool `yaml:"client-cert-auth"`
	// AllowedCN, when set, admits only client certificates with one of
	// these common names (for example kube-apiserver-etcd-client).
	AllowedCN List `yaml:"allowed-cn"`
	// AllowedHostname, when set, admits only client certificates valid
	// for one of these host names.
	AllowedHostname List `yaml:"allowed-hostname"`
}

// Enabled reports whether this transport has x509 material.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// ClientCertAuthOn reports whether callers must present a certificate:
// as configured, else whenever TLS is on.
func (t TLS) ClientCertAuthOn() bool {
	if t.ClientCertAuth != nil {
		return *t.ClientCertAuth
	}
	return t.Enabled()
}

// Default returns the defaults for this process: a single member on
// loopback whose data lives in ./etcdvisor-data, or /var/lib/etcdvisor
// for root.
func Default() *Config {
	dir := DefaultUserDataDir
	if os.Geteuid() == 0 {
		dir = DefaultRootDataDir
	}
	return DefaultWithDataDir(dir)
}

// DefaultWithDataDir returns the defaults with the given data dir.
func DefaultWithDataDir(dataDir string) *Config {
	return &Config{
		Log:     Log{Level: "info", Format: "json"},
		Metrics: Metrics{Listen: "127.0.0.1:2381"},
		Snapshot: Snapshot{
			Jitter:    Duration(time.Minute),
			Compress:  true,
			Timeout:   Duration(30 * time.Minute),
			Retention: Retention{Keep: 24},
			Hooks:     Hooks{Timeout: Duration(5 * time.Minute)},
		},
		Health: Health{
			Interval:               Duration(time.Second),
			ProbeInterval:          Duration(100 * time.Millisecond),
			Window:                 Duration(5 * time.Second),
			RecoverAfter:           Duration(10 * time.Second),
			FsyncDegraded:          Duration(10 * time.Millisecond),
			BackendCommitDegraded:  Duration(25 * time.Millisecond),
			IOPressureDegraded:     0.5,
			CPUPressureDegraded:    0.8,
			MemoryPressureDegraded: 0.2,
			LeaderMove:             true,
			LeaderMoveInterval:     Duration(time.Minute),
			Fence:                  true,
		},
		Join:       Join{LearnerTimeout: Duration(5 * time.Minute)},
		Membership: Membership{RemoveAbandonedLearnerAfter: Duration(10 * time.Minute)},
		Etcd: Etcd{
			Name:                     "default",
			DataDir:                  dataDir,
			ListenClientURLs:         URLList{"http://127.0.0.1:2379"},
			AdvertiseClientURLs:      URLList{"http://127.0.0.1:2379"},
			ListenPeerURLs:           URLList{"http://127.0.0.1:2380"},
			InitialAdvertisePeerURLs: URLList{"http://127.0.0.1:2380"},
			InitialClusterState:      "new",
			InitialClusterToken:      "etcd-cluster",
			HeartbeatInterval:        Duration(100 * time.Millisecond),
			ElectionTimeout:          Duration(time.Second),
			SnapshotCount:            10000,
			QuotaBackendBytes:        2 << 30,
			MaxRequestBytes:          1572864,
			AutoCompactionMode:       "periodic",
			AutoCompactionRetention:  "0",
			TLSMinVersion:            "TLS1.2",
		},
	}
}

// SocketPath is where the control socket lives: control.socket, or the
// data dir's etcdvisor.sock.
func (c *Config) SocketPath() string {
	if c.Control.Socket != "" {
		return c.Control.Socket
	}
	return filepath.Join(c.Etcd.DataDir, SocketName)
}

// LockPath is the data dir's lock file.
func (c *Config) LockPath() string { return filepath.Join(c.Etcd.DataDir, LockName) }

// InitialClusterOrSelf is initial-cluster, or this member alone when empty.
func (c *Config) InitialClusterOrSelf() string {
	if c.Etcd.InitialCluster != "" {
		return c.Etcd.InitialCluster
	}
	s := ""
	for i, u := range c.Etcd.InitialAdvertisePeerURLs {
		if i > 0 {
			s += ","
		}
		s += c.Etcd.Name + "=" + u
	}
	return s
}

// File is the config file this came from, or "" for defaults.
func (c *Config) File() string { return c.src.file }

// SetByFlag records that the value at path (e.g. "etcd.data-dir") now comes
// from a command-line flag, so errors about it name the flag, not a line.
func (c *Config) SetByFlag(path, flag string) {
	if c.src.flags == nil {
		c.src.flags = map[string]string{}
	}
	c.src.flags[path] = flag
}
