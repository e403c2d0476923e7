package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/robfig/cron/v3"
)

// Limits etcd itself enforces; checking them here names the field before
// etcd would fail with its own flag names.
const (
	maxElectionTimeout = 50 * time.Second
	maxQuotaBytes      = 100 << 30
)

// Validate checks every setting and returns all problems as Errors, each
// naming the file, line, YAML path, value and what is expected.
func (c *Config) Validate() error {
	v := validator{c: c}
	e := &c.Etcd

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "console")

	if c.Metrics.Listen != "" {
		if _, port, err := net.SplitHostPort(c.Metrics.Listen); err != nil || !validPort(port) {
			v.fail("metrics.listen", c.Metrics.Listen, "expected host:port, like 127.0.0.1:2381")
		}
	}

	if f := c.Endpoints.File; f != "" && (strings.HasSuffix(f, "/") || !filepath.IsAbs(f) && strings.HasPrefix(f, "~")) {
		v.fail("endpoints.file", f, "expected a file path")
	}

	v.snapshot()
	v.health()
	v.join()
	v.membership()

	switch {
	case e.Name == "":
		v.fail("etcd.name", e.Name, "must not be empty")
	case strings.ContainsAny(e.Name, "=,"):
		v.fail("etcd.name", e.Name, "must not contain '=' or ',' (they separate initial-cluster entries)")
	}
	if e.DataDir == "" {
		v.fail("etcd.data-dir", "", "must not be empty")
	}

	v.urls("etcd.listen-client-urls", e.ListenClientURLs, false, e.ClientTLS)
	v.urls("etcd.advertise-client-urls", e.AdvertiseClientURLs, true, e.ClientTLS)
	v.urls("etcd.listen-peer-urls", e.ListenPeerURLs, false, e.PeerTLS)
	v.urls("etcd.initial-advertise-peer-urls", e.InitialAdvertisePeerURLs, true, e.PeerTLS)
	v.initialCluster()

	v.oneOf("etcd.initial-cluster-state", e.InitialClusterState, "new", "existing")
	if e.InitialClusterToken == "" {
		v.fail("etcd.initial-cluster-token", "", "must not be empty")
	}

	hb, el := e.HeartbeatInterval.D(), e.ElectionTimeout.D()
	switch {
	case hb < time.Millisecond:
		v.fail("etcd.heartbeat-interval", hb.String(), "must be at least 1ms")
	case hb%time.Millisecond != 0:
		v.fail("etcd.heartbeat-interval", hb.String(), "must be a whole number of milliseconds")
	}
	switch {
	case el%time.Millisecond != 0:
		v.fail("etcd.election-timeout", el.String(), "must be a whole number of milliseconds")
	case hb >= time.Millisecond && el < 5*hb:
		v.fail("etcd.election-timeout", el.String(), fmt.Sprintf("must be at least 5x heartbeat-interval (%s)", hb))
	case el > maxElectionTimeout:
		v.fail("etcd.election-timeout", el.String(), fmt.Sprintf("must be at most %s", maxElectionTimeout))
	}

	if e.SnapshotCount == 0 {
		v.fail("etcd.snapshot-count", "0", "must be at least 1")
	}
	if e.QuotaBackendBytes < 0 || e.QuotaBackendBytes > maxQuotaBytes {
		v.fail("etcd.quota-backend-bytes", e.QuotaBackendBytes.String(), "must be between 0 (etcd's default, 2GiB) and 100GiB")
	}
	switch {
	case e.MaxRequestBytes <= 0:
		v.fail("etcd.max-request-bytes", e.MaxRequestBytes.String(), "must be greater than 0")
	case e.QuotaBackendBytes > 0 && e.MaxRequestBytes >= e.QuotaBackendBytes:
		v.fail("etcd.max-request-bytes", e.MaxRequestBytes.String(),
			fmt.Sprintf("must be smaller than quota-backend-bytes (%s)", e.QuotaBackendBytes))
	}

	v.oneOf("etcd.auto-compaction-mode", e.AutoCompactionMode, "periodic", "revision")
	v.retention()

	v.tls("etcd.client-transport-security", e.ClientTLS)
	v.tls("etcd.peer-transport-security", e.PeerTLS)
	v.oneOf("etcd.tls-min-version", e.TLSMinVersion, "TLS1.2", "TLS1.3")
	v.cipherSuites()
	v.plaintextPeers()

	if len(v.errs) == 0 {
		return nil
	}
	sortErrors(v.errs)
	return v.errs
}

type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) fail(path, value, msg string) {
	fe := FieldError{Path: path, Value: value, Msg: msg}
	if flag, ok := v.c.src.flags[path]; ok {
		fe.Flag = flag
	} else if line, ok := v.c.src.lines[path]; ok {
		fe.File, fe.Line = v.c.src.file, line
	} else if v.c.src.file != "" {
		// The value is a default the file did not change; say so, since
		// the operator will look for it in the file.
		fe.File = v.c.src.file
		fe.Msg += " (default value; the file does not set it)"
	}
	v.errs = append(v.errs, fe)
}

func (v *validator) oneOf(path, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.fail(path, value, "expected one of: "+strings.Join(allowed, ", "))
}

// urls checks a URL list. Advertised URLs must be reachable by others, so
// an unspecified address (0.0.0.0, ::) is refused there.
func (v *validator) urls(path string, list URLList, advertise bool, tls TLS) {
	if len(list) == 0 {
		v.fail(path, "", "must list at least one URL")
		return
	}
	for _, s := range list {
		if msg := checkURL(s, advertise, tls); msg != "" {
			v.fail(path, s, msg)
		}
	}
}

func checkURL(s string, advertise bool, tls TLS) string {
	u, err := url.Parse(s)
	if err != nil {
		return "not a URL; expected a URL like http://127.0.0.1:2379"
	}
	switch u.Scheme {
	case "http":
	case "https":
		if !tls.Enabled() {
			return "https needs the transport's cert-file and key-file"
		}
	default:
		return "expected an http:// or https:// URL with host and port, like http://127.0.0.1:2379"
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return "must be scheme://host:port with no path, query or user"
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || !validPort(port) {
		return "must name a host and a port, like http://127.0.0.1:2379"
	}
	if advertise {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return "an advertised URL must be an address others can reach, not " + host
		}
	}
	return ""
}

func validPort(s string) bool {
	p, err := strconv.Atoi(s)
	return err == nil && p > 0 && p < 65536
}

// initialCluster checks the name=url list and that it names this member
// with exactly its advertised peer URLs, as etcd will require at start.
func (v *validator) initialCluster() {
	e := &v.c.Etcd
	const path = "etcd.initial-cluster"
	ic := e.InitialCluster
	if ic == "" {
		return // this member alone; built from name and advertised peer URLs
	}
	seen := map[string]string{}
	names := map[string]bool{}
	var self []string
	for _, entry := range strings.Split(ic, ",") {
		name, u, ok := strings.Cut(strings.TrimSpace(entry), "=")
		if !ok || name == "" || u == "" {
			v.fail(path, ic, fmt.Sprintf("entry %q is not name=URL", entry))
			return
		}
		if msg := checkURL(u, true, e.PeerTLS); msg != "" {
			v.fail(path, ic, fmt.Sprintf("member %s: %s", name, msg))
			continue
		}
		if prev, dup := seen[u]; dup {
			v.fail(path, ic, fmt.Sprintf("peer URL %s is listed twice (members %s and %s)", u, prev, name))
			continue
		}
		seen[u] = name
		// etcd reads a repeated name as one member with several peer URLs;
		// in a hand-written list it is far more often a copy-paste slip
		// that silently makes a cluster one member smaller.
		if names[name] {
			v.fail(path, ic, fmt.Sprintf("member %s is listed twice; give each member one entry (etcdvisor supports one peer URL per member)", name))
			continue
		}
		names[name] = true
		if name == e.Name {
			self = append(self, u)
		}
	}
	if len(self) == 0 {
		v.fail(path, ic, fmt.Sprintf("does not name this member %q; add %s=%s", e.Name, e.Name, strings.Join(e.InitialAdvertisePeerURLs, ",")))
		return
	}
	if !sameSet(self, e.InitialAdvertisePeerURLs) {
		v.fail(path, ic, fmt.Sprintf("lists %s for this member %q, but initial-advertise-peer-urls is %s; they must match",
			strings.Join(self, ","), e.Name, strings.Join(e.InitialAdvertisePeerURLs, ",")))
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
		if m[s] < 0 {
			return false
		}
	}
	return true
}

// retention follows etcd: periodic takes a duration or a whole number of
// hours, revision a whole number of revisions; "0" turns compaction off.
func (v *validator) retention() {
	e := &v.c.Etcd
	const path = "etcd.auto-compaction-retention"
	r := e.AutoCompactionRetention
	if r == "" {
		v.fail(path, r, `must not be empty; "0" turns auto-compaction off`)
		return
	}
	if n, err := strconv.ParseInt(r, 10, 64); err == nil {
		if n < 0 {
			v.fail(path, r, "must not be negative")
		}
		return
	}
	if e.AutoCompactionMode == "revision" {
		v.fail(path, r, "with auto-compaction-mode revision, expected a whole number of revisions")
		return
	}
	if d, err := time.ParseDuration(r); err != nil || d < 0 {
		v.fail(path, r, `expected a duration like "1h" or a whole number of hours`)
	}
}

func (v *validator) tls(path string, t TLS) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.fail(path, "", "cert-file and key-file go together; set both or neither")
	}
	if t.ClientCertAuthOn() && t.TrustedCAFile == "" {
		v.fail(path+".trusted-ca-file", "", "needed to check client certificates (client-cert-auth is on whenever TLS is; "+
			"set client-cert-auth: false to accept any client)")
	}
	if !t.Enabled() {
		for key, val := range map[string]string{"trusted-ca-file": t.TrustedCAFile,
			"allowed-cn": strings.Join(t.AllowedCN, ","), "allowed-hostname": strings.Join(t.AllowedHostname, ",")} {
			if val != "" {
				v.fail(path+"."+key, val, "needs cert-file and key-file too")
			}
		}
	}
	if (len(t.AllowedCN) > 0 || len(t.AllowedHostname) > 0) && !t.ClientCertAuthOn() {
		v.fail(path+".client-cert-auth", "false", "allowed-cn and allowed-hostname check client certificates, so client-cert-auth must be on")
	}
	if len(t.AllowedCN) > 0 && len(t.AllowedHostname) > 0 {
		v.fail(path+".allowed-hostname", strings.Join(t.AllowedHostname, ","), "set allowed-cn or allowed-hostname, not both (etcd checks one)")
	}
}

// cipherSuites checks names against Go's secure TLS 1.2 suites; insecure
// ones are refused rather than silently enabled.
func (v *validator) cipherSuites() {
	known := map[string]bool{}
	for _, cs := range tls.CipherSuites() {
		known[cs.Name] = true
	}
	for _, name := range v.c.Etcd.CipherSuites {
		if !known[name] {
			v.fail("etcd.cipher-suites", name, "not a secure TLS 1.2 cipher suite Go knows; leave cipher-suites empty for safe defaults")
		}
	}
}

// plaintextPeers refuses plain http between members of a multi-member
// cluster unless the operator said insecure: true: raft traffic carries
// every key, Kubernetes secrets included.
func (v *validator) plaintextPeers() {
	e := &v.c.Etcd
	if e.Insecure || e.PeerTLS.Enabled() {
		return
	}
	names := map[string]bool{}
	for _, entry := range strings.Split(v.c.InitialClusterOrSelf(), ",") {
		if name, _, ok := strings.Cut(strings.TrimSpace(entry), "="); ok {
			names[name] = true
		}
	}
	if v.c.Join.Joining() {
		names["(the cluster joined)"] = true
	}
	if len(names) > 1 || v.c.Join.Joining() {
		v.fail("etcd.peer-transport-security", "", fmt.Sprintf("a %d-member cluster over plain http sends every key unencrypted between hosts; "+
			"configure peer TLS (etcdvisor pki bootstrap makes the certificates) or set etcd.insecure: true to accept that", len(names)))
	}
}

// snapshot checks the schedule, the age recipients, and the limits.
func (v *validator) snapshot() {
	sn := &v.c.Snapshot
	if sn.Schedule != "" {
		if _, err := cron.ParseStandard(sn.Schedule); err != nil {
			v.fail("snapshot.schedule", sn.Schedule, `expected a cron expression like "0 * * * *" or an interval like "@every 30m"`)
		}
	}
	if sn.Jitter < 0 {
		v.fail("snapshot.jitter", sn.Jitter.String(), "must not be negative")
	}
	for _, r := range sn.Recipients {
		if _, err := age.ParseX25519Recipient(r); err != nil {
			v.fail("snapshot.recipients", r, "not an age public key (age1...); make one with age-keygen")
		}
	}
	if sn.RateLimit < 0 {
		v.fail("snapshot.rate-limit", sn.RateLimit.String(), "must not be negative")
	}
	if sn.Timeout <= 0 {
		v.fail("snapshot.timeout", sn.Timeout.String(), "must be positive")
	}
	r := sn.Retention
	for key, n := range map[string]int{"keep": r.Keep, "hourly": r.Hourly, "daily": r.Daily, "weekly": r.Weekly} {
		if n < 0 {
			v.fail("snapshot.retention."+key, fmt.Sprint(n), "must not be negative")
		}
	}
	if r.MaxAge < 0 {
		v.fail("snapshot.retention.max-age", r.MaxAge.String(), "must not be negative")
	}
	if sn.Hooks.Timeout <= 0 {
		v.fail("snapshot.hooks.timeout", sn.Hooks.Timeout.String(), "must be positive")
	}
}

func (v *validator) health() {
	h := &v.c.Health
	type setting struct {
		path string
		d    Duration
	}
	for _, x := range []setting{
		{"health.interval", h.Interval},
		{"health.probe-interval", h.ProbeInterval},
		{"health.window", h.Window},
		{"health.leader-move-interval", h.LeaderMoveInterval},
	} {
		if x.d <= 0 {
			v.fail(x.path, x.d.String(), "must be positive")
		}
	}
	for _, x := range []setting{
		{"health.recover-after", h.RecoverAfter},
		{"health.fsync-degraded", h.FsyncDegraded},
		{"health.fsync-critical", h.FsyncCritical},
		{"health.backend-commit-degraded", h.BackendCommitDegraded},
		{"health.backend-commit-critical", h.BackendCommitCritical},
		{"health.peer-rtt-degraded", h.PeerRTTDegraded},
		{"health.peer-rtt-critical", h.PeerRTTCritical},
		{"health.fsync-in-flight-critical", h.FsyncInFlightCritical},
		{"health.stall-after", h.StallAfter},
	} {
		if x.d < 0 {
			v.fail(x.path, x.d.String(), "must not be negative (0 derives it from etcd's timers)")
		}
	}
	for _, x := range []struct {
		path string
		v    float64
	}{
		{"health.io-pressure-degraded", h.IOPressureDegraded},
		{"health.cpu-pressure-degraded", h.CPUPressureDegraded},
		{"health.memory-pressure-degraded", h.MemoryPressureDegraded},
	} {
		if x.v <= 0 || x.v > 1 {
			v.fail(x.path, fmt.Sprint(x.v), "must be a share of time in (0, 1], like 0.5 for half of it")
		}
	}
	if h.Window > 0 && h.Interval > h.Window {
		v.fail("health.window", h.Window.String(), fmt.Sprintf("must be at least health.interval (%s): each judgement looks back over it", h.Interval))
	}
	for _, x := range []struct {
		name               string
		degraded, critical Duration
	}{
		{"fsync", h.FsyncDegraded, h.FsyncCritical},
		{"backend-commit", h.BackendCommitDegraded, h.BackendCommitCritical},
		{"peer-rtt", h.PeerRTTDegraded, h.PeerRTTCritical},
	} {
		if x.degraded > 0 && x.critical > 0 && x.critical < x.degraded {
			v.fail("health."+x.name+"-critical", x.critical.String(), fmt.Sprintf("must not be below health.%s-degraded (%s)", x.name, x.degraded))
		}
	}
}

func (v *validator) membership() {
	d := v.c.Membership.RemoveUnreachableAfter
	min := 3 * v.c.Etcd.ElectionTimeout
	if d != 0 && d < min {
		v.fail("membership.remove-unreachable-after", d.String(), fmt.Sprintf("must be 0 (off) or at least 3x etcd.election-timeout (%s): a restart or an election is not a failure", min))
	}
	if a := v.c.Membership.RemoveAbandonedLearnerAfter; a != 0 && a < Duration(10*time.Second) {
		v.fail("membership.remove-abandoned-learner-after", a.String(), "must be 0 (off) or at least 10s: a joiner that restarts takes the lock again within seconds")
	}
}

func (v *validator) join() {
	j := &v.c.Join
	if !j.Joining() {
		if j.Replaces != "" {
			v.fail("join.replaces", j.Replaces, "needs join.endpoints: the client URLs of the cluster to join")
		}
		return
	}
	v.urls("join.endpoints", j.Endpoints, true, v.c.Etcd.ClientTLS)
	if j.LearnerTimeout <= 0 {
		v.fail("join.learner-timeout", j.LearnerTimeout.String(), "must be a positive duration, like 5m")
	}
	if strings.ContainsAny(j.Replaces, "=,") {
		v.fail("join.replaces", j.Replaces, "expected one member name")
	}
}
