package config

import (
	"bytes"
	"strings"
	"text/template"
)

// defaultTemplate is the commented config that `etcdvisor config default`
// prints. Its values come from a Config, so it cannot drift from Default.
var defaultTemplate = template.Must(template.New("default").Funcs(template.FuncMap{
	"list": func(l []string) string { return "[" + strings.Join(l, ", ") + "]" },
}).Parse(`# etcdvisor configuration. Every key is optional; unknown keys are errors.
# Check a file with: etcdvisor config validate FILE

log:
  # debug | info | warn | error. etcd logs through the same logger.
  level: {{.Log.Level}}
  # json for journald and log shippers, console for people.
  format: {{.Log.Format}}

control:
  # The local control socket the CLI talks to. Empty: <etcd.data-dir>/etcdvisor.sock.
  # Under systemd, /run/etcdvisor/etcdvisor.sock.
  socket: "{{.Control.Socket}}"
  # A unix group whose members may use the socket (mode 0660). Empty: only
  # root and the daemon's own user (mode 0600).
  group: "{{.Control.Group}}"

metrics:
  # Prometheus listener: /metrics (etcd's and etcdvisor's), /healthz, /readyz.
  # Empty turns it off.
  listen: "{{.Metrics.Listen}}"

endpoints:
  # A file kept holding the --etcd-servers value for kube-apiserver (the
  # voting members' client URLs), rewritten atomically whenever the member
  # list changes. Empty: no file. Under systemd, e.g. /run/etcdvisor/etcd-servers.
  file: "{{.Endpoints.File}}"

snapshot:
  # Where snapshots and their manifests go. Empty: <etcd.data-dir>/snapshots.
  # A different disk is better; packaged installs use /var/backups/etcdvisor.
  dir: "{{.Snapshot.Dir}}"
  # When to take one: cron ("0 * * * *") or an interval ("@every 30m").
  # Empty: only on request (etcdvisor snapshot save).
  schedule: "{{.Snapshot.Schedule}}"
  # A random delay up to this, so members do not snapshot all at once.
  jitter: {{.Snapshot.Jitter}}
  compress: {{.Snapshot.Compress}}
  # age public keys (age1...): snapshots are encrypted to them, so this
  # host can write backups it cannot read. Empty: not encrypted.
  recipients: {{list .Snapshot.Recipients}}
  # Bytes per second read from etcd, so a snapshot does not starve etcd's
  # own fsyncs. 0: no limit.
  rate-limit: {{.Snapshot.RateLimit}}
  timeout: {{.Snapshot.Timeout}}
  # Applied after each good snapshot; the newest good one is never removed.
  retention:
    keep: {{.Snapshot.Retention.Keep}}
    max-age: {{.Snapshot.Retention.MaxAge}}
    hourly: {{.Snapshot.Retention.Hourly}}
    daily: {{.Snapshot.Retention.Daily}}
    weekly: {{.Snapshot.Retention.Weekly}}
  # Commands (argv lists, no shell) run before and after each snapshot,
  # with ETCDVISOR_SNAPSHOT and ETCDVISOR_SNAPSHOT_MANIFEST in the
  # environment, e.g. [/usr/local/bin/ship-backup].
  hooks:
    before: {{list .Snapshot.Hooks.Before}}
    after: {{list .Snapshot.Hooks.After}}
    timeout: {{.Snapshot.Hooks.Timeout}}

health:
  # The starvation watch samples the disk (its own fsync probe and etcd's WAL
  # and backend latencies), IO/CPU/memory pressure and the round trip to each
  # peer, and calls this member ok, degraded or critical. Thresholds left at
  # 0 follow etcd's timers: fsync-critical is half the heartbeat interval,
  # backend-commit-critical and peer-rtt-critical the heartbeat interval,
  # peer-rtt-degraded half of it, fsync-in-flight-critical three heartbeat
  # intervals, stall-after the election timeout and stall-exit-after ten
  # election timeouts.
  interval: {{.Health.Interval}}
  probe-interval: {{.Health.ProbeInterval}}
  window: {{.Health.Window}}
  # A better state must hold this long before it is reported.
  recover-after: {{.Health.RecoverAfter}}
  fsync-degraded: {{.Health.FsyncDegraded}}
  fsync-critical: {{.Health.FsyncCritical}}
  backend-commit-degraded: {{.Health.BackendCommitDegraded}}
  backend-commit-critical: {{.Health.BackendCommitCritical}}
  peer-rtt-degraded: {{.Health.PeerRTTDegraded}}
  peer-rtt-critical: {{.Health.PeerRTTCritical}}
  # PSI: the share of the last interval (0..1) that tasks were stalled on
  # IO and memory (full) or waited for a CPU (some); above it, degraded.
  io-pressure-degraded: {{.Health.IOPressureDegraded}}
  cpu-pressure-degraded: {{.Health.CPUPressureDegraded}}
  memory-pressure-degraded: {{.Health.MemoryPressureDegraded}}
  # One probe fsync that has not returned for this long is critical at once:
  # a leader sends nothing, heartbeats included, while its WAL fsync runs.
  fsync-in-flight-critical: {{.Health.FsyncInFlightCritical}}
  stall-after: {{.Health.StallAfter}}
  # Stalled this long, etcdvisor exits non-zero so systemd restarts it.
  # Negative: never.
  stall-exit-after: {{.Health.StallExitAfter}}
  # While this member leads and is critical, hand leadership to a healthy,
  # caught-up voter, at most once per leader-move-interval.
  leader-move: {{.Health.LeaderMove}}
  leader-move-interval: {{.Health.LeaderMoveInterval}}
  # While critical, refuse client requests with a retryable "unavailable",
  # so clients move to healthy members; never when that would leave fewer
  # serving voters than a quorum.
  fence: {{.Health.Fence}}

join:
  # With endpoints set and no member in etcd.data-dir yet, join that running
  # cluster: under its membership lock, after a pre-flight and a snapshot,
  # remove the member named by replaces (a failed one; a healthy one needs
  # force), add this member as a learner and promote it once it has caught
  # up. Every step is journalled; a join cut short resumes on restart.
  endpoints: {{list .Join.Endpoints}}
  replaces: "{{.Join.Replaces}}"
  force: {{.Join.Force}}
  # A learner that makes no progress this long is removed again.
  learner-timeout: {{.Join.LearnerTimeout}}
  skip-snapshot: {{.Join.SkipSnapshot}}

membership:
  # A member with no live etcdvisor and no answer on its peer URL this long
  # is removed by the leader's etcdvisor, within the safety rules. 0: never;
  # removal stays the operator's decision.
  remove-unreachable-after: {{.Membership.RemoveUnreachableAfter}}
  # A learner present this long while nobody holds the membership lock was
  # left by a joiner that died; the leader's etcdvisor removes it. 0: never.
  remove-abandoned-learner-after: {{.Membership.RemoveAbandonedLearnerAfter}}

etcd:
  # This member's name; unique in the cluster and listed in initial-cluster.
  name: {{.Etcd.Name}}
  # etcd's data dir (etcd keeps member/ inside). It holds etcdvisor's lock
  # file and, by default, the control socket.
  data-dir: {{.Etcd.DataDir}}
  # A separate WAL dir on its own fast disk; empty keeps the WAL in data-dir.
  wal-dir: "{{.Etcd.WalDir}}"

  listen-client-urls: {{list .Etcd.ListenClientURLs}}
  # What clients such as kube-apiserver are told to use.
  advertise-client-urls: {{list .Etcd.AdvertiseClientURLs}}
  listen-peer-urls: {{list .Etcd.ListenPeerURLs}}
  initial-advertise-peer-urls: {{list .Etcd.InitialAdvertisePeerURLs}}

  # Every member as name=peer-URL, comma-separated, e.g.
  # "a=https://10.0.0.1:2380,b=https://10.0.0.2:2380,c=https://10.0.0.3:2380".
  # Empty: this member alone, from name and initial-advertise-peer-urls.
  initial-cluster: "{{.Etcd.InitialCluster}}"
  # new to bootstrap a cluster, existing to join one that runs.
  initial-cluster-state: {{.Etcd.InitialClusterState}}
  # Unique per cluster, so members of two clusters never mix.
  initial-cluster-token: {{.Etcd.InitialClusterToken}}

  # Raft timing. Set heartbeat-interval near the round-trip time between
  # members; election-timeout must be at least 5x heartbeat-interval.
  heartbeat-interval: {{.Etcd.HeartbeatInterval}}
  election-timeout: {{.Etcd.ElectionTimeout}}

  # Applied entries between raft snapshots.
  snapshot-count: {{.Etcd.SnapshotCount}}
  # Backend size before etcd raises a NOSPACE alarm (etcd suggests at most 8GiB).
  quota-backend-bytes: {{.Etcd.QuotaBackendBytes}}
  # Largest request etcd accepts.
  max-request-bytes: {{.Etcd.MaxRequestBytes}}

  # periodic (retention is a duration or hours) or revision (a count).
  # "0" is off: kube-apiserver compacts etcd itself every 5 minutes.
  auto-compaction-mode: {{.Etcd.AutoCompactionMode}}
  auto-compaction-retention: "{{.Etcd.AutoCompactionRetention}}"

  # x509 for clients and peers. Empty means plain http on these URLs; a
  # multi-member cluster then needs insecure: true. etcdvisor pki makes the files.
  client-transport-security:
    cert-file: "{{.Etcd.ClientTLS.CertFile}}"
    key-file: "{{.Etcd.ClientTLS.KeyFile}}"
    trusted-ca-file: "{{.Etcd.ClientTLS.TrustedCAFile}}"
    # Require client certificates signed by trusted-ca-file. Default: on
    # whenever cert-file is set.
    # client-cert-auth: true
    # Admit only client certificates with this CN (e.g. the API server's).
    allowed-cn: {{list .Etcd.ClientTLS.AllowedCN}}
    allowed-hostname: {{list .Etcd.ClientTLS.AllowedHostname}}
  peer-transport-security:
    cert-file: "{{.Etcd.PeerTLS.CertFile}}"
    key-file: "{{.Etcd.PeerTLS.KeyFile}}"
    trusted-ca-file: "{{.Etcd.PeerTLS.TrustedCAFile}}"
    # client-cert-auth: true
    allowed-cn: {{list .Etcd.PeerTLS.AllowedCN}}
    allowed-hostname: {{list .Etcd.PeerTLS.AllowedHostname}}
  # TLS1.2 or TLS1.3.
  tls-min-version: {{.Etcd.TLSMinVersion}}
  # TLS 1.2 cipher suites by Go's names; empty keeps Go's secure defaults.
  cipher-suites: {{list .Etcd.CipherSuites}}
  # Allow plain http between the members of a multi-member cluster. Raft
  # traffic carries every key, Kubernetes secrets included: leave it false.
  insecure: {{.Etcd.Insecure}}
`))

// Commented renders c as a complete, commented config file.
func (c *Config) Commented() []byte {
	var b bytes.Buffer
	if err := defaultTemplate.Execute(&b, c); err != nil {
		panic(err) // the template is fixed and fields always exist
	}
	return b.Bytes()
}
