package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseErrorsNameFileLinePathAndValue(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error, in order
	}{
		{
			name: "unknown top-level key",
			yaml: "log:\n  level: info\nbogus: 1\n",
			want: []string{"etcdvisor.yaml:3: bogus: unknown key; expected one of: log, control, metrics, endpoints, snapshot, health, join, membership, etcd"},
		},
		{
			name: "unknown nested key",
			yaml: "etcd:\n  name: a\n  heartbeat: 100ms\n",
			want: []string{"etcdvisor.yaml:3: etcd.heartbeat: unknown key"},
		},
		{
			name: "wrong type for a number",
			yaml: "etcd:\n  snapshot-count: lots\n",
			want: []string{`etcdvisor.yaml:2: etcd.snapshot-count "lots": expected a whole number`},
		},
		{
			name: "duration without unit",
			yaml: "etcd:\n  heartbeat-interval: 100\n",
			want: []string{`etcdvisor.yaml:2: etcd.heartbeat-interval "100": expected a duration with a unit`},
		},
		{
			name: "bad size",
			yaml: "etcd:\n  quota-backend-bytes: huge\n",
			want: []string{`etcdvisor.yaml:2: etcd.quota-backend-bytes "huge": expected a size like 8GiB`},
		},
		{
			name: "scalar where a section belongs",
			yaml: "etcd: yes\n",
			want: []string{"etcdvisor.yaml:1: etcd: expected a mapping"},
		},
		{
			name: "all errors are listed in file order",
			yaml: "bogus: 1\netcd:\n  snapshot-count: x\n  nope: 2\n",
			want: []string{"etcdvisor.yaml:1: bogus", "etcdvisor.yaml:3: etcd.snapshot-count", "etcdvisor.yaml:4: etcd.nope"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("etcdvisor.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded, want an error containing %q", tt.want)
			}
			assertInOrder(t, err.Error(), tt.want)
		})
	}
}

func TestValidateErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "health: critical budget under the degraded one",
			yaml: "health:\n  fsync-degraded: 20ms\n  fsync-critical: 10ms\n",
			want: []string{`etcdvisor.yaml:3: health.fsync-critical "10ms": must not be below health.fsync-degraded (20ms)`},
		},
		{
			name: "health: pressure is a share of time",
			yaml: "health:\n  cpu-pressure-degraded: 80\n",
			want: []string{`etcdvisor.yaml:2: health.cpu-pressure-degraded "80": must be a share of time in (0, 1], like 0.5 for half of it`},
		},
		{
			name: "health: negative threshold",
			yaml: "health:\n  stall-after: -1s\n",
			want: []string{`etcdvisor.yaml:2: health.stall-after "-1s": must not be negative (0 derives it from etcd's timers)`},
		},
		{
			name: "health: window shorter than the interval",
			yaml: "health:\n  interval: 2s\n  window: 1s\n",
			want: []string{`etcdvisor.yaml:3: health.window "1s": must be at least health.interval (2s)`},
		},
		{
			name: "join: replaces without endpoints",
			yaml: "join:\n  replaces: m3\n",
			want: []string{`etcdvisor.yaml:2: join.replaces "m3": needs join.endpoints: the client URLs of the cluster to join`},
		},
		{
			name: "join: an endpoint that is not a URL",
			yaml: "etcd:\n  insecure: true\njoin:\n  endpoints: [\"10.0.0.1:2379\"]\n",
			want: []string{`join.endpoints "10.0.0.1:2379": not a URL`},
		},
		{
			name: "join: plain http peers without insecure",
			yaml: "join:\n  endpoints: [\"http://127.0.0.1:2379\"]\n",
			want: []string{`etcd.peer-transport-security`, `over plain http`},
		},
		{
			name: "join: no learner timeout",
			yaml: "etcd:\n  insecure: true\njoin:\n  endpoints: [\"http://127.0.0.1:2379\"]\n  learner-timeout: 0s\n",
			want: []string{`join.learner-timeout "0s": must be a positive duration, like 5m`},
		},
		{
			name: "membership: automatic removal sooner than a restart",
			yaml: "membership:\n  remove-unreachable-after: 2s\n",
			want: []string{`etcdvisor.yaml:2: membership.remove-unreachable-after "2s": must be 0 (off) or at least 3x etcd.election-timeout (3s)`},
		},
		{
			name: "election timeout under 5x heartbeat",
			yaml: "etcd:\n  heartbeat-interval: 100ms\n  election-timeout: 300ms\n",
			want: []string{`etcdvisor.yaml:3: etcd.election-timeout "300ms": must be at least 5x heartbeat-interval (100ms)`},
		},
		{
			name: "URL without a scheme",
			yaml: "etcd:\n  listen-client-urls: [\"127.0.0.1:2379\"]\n",
			want: []string{`etcdvisor.yaml:2: etcd.listen-client-urls "127.0.0.1:2379": not a URL; expected a URL like http://127.0.0.1:2379`},
		},
		{
			name: "https without certificates",
			yaml: "etcd:\n  listen-client-urls: https://127.0.0.1:2379\n",
			want: []string{`etcd.listen-client-urls "https://127.0.0.1:2379": https needs the transport's cert-file and key-file`},
		},
		{
			name: "advertising an unspecified address",
			yaml: "etcd:\n  advertise-client-urls: http://0.0.0.0:2379\n",
			want: []string{`etcd.advertise-client-urls "http://0.0.0.0:2379": an advertised URL must be an address others can reach`},
		},
		{
			name: "initial cluster that omits this member",
			yaml: "etcd:\n  name: a\n  initial-cluster: b=http://127.0.0.2:2380,c=http://127.0.0.3:2380\n",
			want: []string{`etcdvisor.yaml:3: etcd.initial-cluster "b=http://127.0.0.2:2380,c=http://127.0.0.3:2380": does not name this member "a"`},
		},
		{
			name: "initial cluster with this member on other URLs",
			yaml: "etcd:\n  name: a\n  initial-cluster: a=http://127.0.0.9:2380\n",
			want: []string{`but initial-advertise-peer-urls is http://127.0.0.1:2380; they must match`},
		},
		{
			name: "initial cluster listing a peer URL twice",
			yaml: "etcd:\n  name: a\n  initial-cluster: a=http://127.0.0.1:2380,b=http://127.0.0.1:2380\n",
			want: []string{`peer URL http://127.0.0.1:2380 is listed twice (members a and b)`},
		},
		{
			name: "initial cluster listing a member twice",
			yaml: "etcd:\n  name: a\n  insecure: true\n  initial-cluster: a=http://127.0.0.1:2380,b=http://127.0.0.2:2380,b=http://127.0.0.3:2380\n",
			want: []string{`member b is listed twice`},
		},
		{
			name: "bad enum",
			yaml: "log:\n  format: xml\netcd:\n  initial-cluster-state: maybe\n",
			want: []string{`etcdvisor.yaml:2: log.format "xml": expected one of: json, console`, `etcdvisor.yaml:4: etcd.initial-cluster-state "maybe": expected one of: new, existing`},
		},
		{
			name: "request larger than the quota",
			yaml: "etcd:\n  quota-backend-bytes: 1MiB\n  max-request-bytes: 2MiB\n",
			want: []string{`etcdvisor.yaml:3: etcd.max-request-bytes "2MiB": must be smaller than quota-backend-bytes (1MiB)`},
		},
		{
			name: "revision compaction with a duration",
			yaml: "etcd:\n  auto-compaction-mode: revision\n  auto-compaction-retention: 1h\n",
			want: []string{`etcd.auto-compaction-retention "1h": with auto-compaction-mode revision, expected a whole number`},
		},
		{
			name: "cert without key",
			yaml: "etcd:\n  peer-transport-security:\n    cert-file: /x.crt\n",
			want: []string{`etcd.peer-transport-security: cert-file and key-file go together`},
		},
		{
			name: "a default that conflicts with a set value says it is a default",
			yaml: "etcd:\n  election-timeout: 400ms\n",
			want: []string{`etcd.election-timeout "400ms": must be at least 5x heartbeat-interval (100ms)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("etcdvisor.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = cfg.Validate()
			if err == nil {
				t.Fatalf("Validate succeeded, want an error containing %q", tt.want)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Validate returned %T, want config.Errors", err)
			}
			assertInOrder(t, err.Error(), tt.want)
		})
	}
}

func TestValidateNamesTheFlagThatSetAValue(t *testing.T) {
	cfg, err := Parse("etcdvisor.yaml", []byte("etcd:\n  name: a\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Etcd.Name = "bad=name"
	cfg.SetByFlag("etcd.name", "name")
	err = cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), `flag --name: etcd.name "bad=name": must not contain`) {
		t.Fatalf("got %v, want an error naming flag --name", err)
	}
}

func TestDefaultsAreValid(t *testing.T) {
	for _, dir := range []string{DefaultUserDataDir, DefaultRootDataDir} {
		if err := DefaultWithDataDir(dir).Validate(); err != nil {
			t.Errorf("defaults with data dir %s do not validate: %v", dir, err)
		}
	}
}

func TestCommentedDefaultParsesBackToTheDefaults(t *testing.T) {
	want := Default()
	got, err := Parse("default.yaml", want.Commented())
	if err != nil {
		t.Fatalf("the printed default config does not parse: %v\n%s", err, want.Commented())
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("the printed default config does not validate: %v", err)
	}
	got.src, want.src = source{}, source{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("printed default differs from Default():\ngot  %+v\nwant %+v", got, want)
	}
}

func TestParseFillsDefaultsForMissingKeys(t *testing.T) {
	cfg, err := Parse("x.yaml", []byte("etcd:\n  name: infra1\n  heartbeat-interval: 50ms\n  election-timeout: 500ms\n  quota-backend-bytes: 8GiB\n  listen-client-urls: http://127.0.0.1:2379,http://127.0.0.2:2379\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := cfg.Etcd
	if e.Name != "infra1" || e.HeartbeatInterval.D() != 50*time.Millisecond || e.ElectionTimeout.D() != 500*time.Millisecond {
		t.Errorf("got name %q heartbeat %s election %s", e.Name, e.HeartbeatInterval, e.ElectionTimeout)
	}
	if e.QuotaBackendBytes != 8<<30 {
		t.Errorf("got quota %d, want %d", e.QuotaBackendBytes, int64(8<<30))
	}
	if want := (URLList{"http://127.0.0.1:2379", "http://127.0.0.2:2379"}); !reflect.DeepEqual(e.ListenClientURLs, want) {
		t.Errorf("got listen-client-urls %v, want %v", e.ListenClientURLs, want)
	}
	if e.SnapshotCount != 10000 || cfg.Metrics.Listen != "127.0.0.1:2381" {
		t.Errorf("defaults not kept: snapshot-count %d metrics %q", e.SnapshotCount, cfg.Metrics.Listen)
	}
	if got, want := cfg.InitialClusterOrSelf(), "infra1=http://127.0.0.1:2380"; got != want {
		t.Errorf("got initial cluster %q, want %q", got, want)
	}
}

func TestLoadNamesAMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing.yaml")
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error naming %s", err, p)
	}
}

func TestSocketPathDefaultsToTheDataDir(t *testing.T) {
	cfg := DefaultWithDataDir("/srv/etcd")
	if got := cfg.SocketPath(); got != "/srv/etcd/etcdvisor.sock" {
		t.Errorf("got %s", got)
	}
	cfg.Control.Socket = "/run/etcdvisor/etcdvisor.sock"
	if got := cfg.SocketPath(); got != "/run/etcdvisor/etcdvisor.sock" {
		t.Errorf("got %s", got)
	}
}

func assertInOrder(t *testing.T, got string, want []string) {
	t.Helper()
	rest := got
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("error does not contain %q (in order)\ngot:\n%s", w, got)
		}
		rest = rest[i+len(w):]
	}
}

func TestValidateRefusesAURLWithAnotherScheme(t *testing.T) {
	cfg := DefaultWithDataDir("d")
	cfg.Etcd.ListenPeerURLs = URLList{"tcp://127.0.0.1:2380"}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), `etcd.listen-peer-urls "tcp://127.0.0.1:2380": expected an http:// or https:// URL`) {
		t.Fatalf("got %v", err)
	}
}

func TestValidateTLSAndPlaintextPeerRules(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // "" means valid
	}{
		{
			name: "a three-member cluster over plain http is refused",
			yaml: "etcd:\n  name: a\n  initial-cluster: a=http://127.0.0.1:2380,b=http://127.0.0.2:2380,c=http://127.0.0.3:2380\n",
			want: "etcd.peer-transport-security: a 3-member cluster over plain http sends every key unencrypted",
		},
		{
			name: "insecure: true accepts it",
			yaml: "etcd:\n  name: a\n  insecure: true\n  initial-cluster: a=http://127.0.0.1:2380,b=http://127.0.0.2:2380\n",
		},
		{
			name: "TLS turns client-cert-auth on, which needs a CA",
			yaml: "etcd:\n  client-transport-security:\n    cert-file: s.crt\n    key-file: s.key\n",
			want: "etcd.client-transport-security.trusted-ca-file: needed to check client certificates",
		},
		{
			name: "client-cert-auth may be turned off on purpose",
			yaml: "etcd:\n  client-transport-security:\n    cert-file: s.crt\n    key-file: s.key\n    client-cert-auth: false\n",
		},
		{
			name: "allowed-cn and allowed-hostname exclude each other",
			yaml: "etcd:\n  client-transport-security:\n    cert-file: s.crt\n    key-file: s.key\n    trusted-ca-file: ca.crt\n    allowed-cn: [kube-apiserver]\n    allowed-hostname: api.example\n",
			want: `etcd.client-transport-security.allowed-hostname "api.example": set allowed-cn or allowed-hostname, not both`,
		},
		{
			name: "allowed-cn without TLS",
			yaml: "etcd:\n  client-transport-security:\n    allowed-cn: kube-apiserver\n",
			want: `etcd.client-transport-security.allowed-cn "kube-apiserver": needs cert-file and key-file too`,
		},
		{
			name: "an insecure cipher suite is refused",
			yaml: "etcd:\n  cipher-suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
			want: `etcd.cipher-suites "TLS_RSA_WITH_RC4_128_SHA": not a secure TLS 1.2 cipher suite`,
		},
		{
			name: "a secure cipher suite is accepted",
			yaml: "etcd:\n  cipher-suites: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n  tls-min-version: TLS1.3\n",
		},
		{
			name: "a snapshot schedule that is not cron",
			yaml: "snapshot:\n  schedule: every half hour\n",
			want: `snapshot.schedule "every half hour": expected a cron expression`,
		},
		{
			name: "a snapshot recipient that is not an age key",
			yaml: "snapshot:\n  recipients: [ssh-rsa AAAA]\n",
			want: `snapshot.recipients "ssh-rsa AAAA": not an age public key`,
		},
		{
			name: "a good snapshot section",
			yaml: "snapshot:\n  schedule: \"@every 30m\"\n  rate-limit: 100MiB\n  retention: {keep: 3, daily: 7, max-age: 720h}\n  hooks: {after: [/bin/true, x]}\n",
		},
		{
			name: "an unknown TLS version",
			yaml: "etcd:\n  tls-min-version: TLS1.1\n",
			want: `etcd.tls-min-version "TLS1.1": expected one of: TLS1.2, TLS1.3`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("etcdvisor.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestAHookMustBeAList(t *testing.T) {
	_, err := Parse("etcdvisor.yaml", []byte("snapshot:\n  hooks:\n    after: /usr/bin/ship backup\n"))
	if err == nil || !strings.Contains(err.Error(), `etcdvisor.yaml:3: snapshot.hooks.after "/usr/bin/ship backup": expected a command as a list`) {
		t.Fatalf("got %v", err)
	}
}
