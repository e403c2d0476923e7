package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etcdvisor/etcdvisor/internal/config"
)

// TestEtcdvisorConfigIsValid checks the configs the bench writes against
// etcdvisor's strict loader, so a schema change fails here rather than
// minutes into a run, and that they say what plain etcd's flags say.
func TestEtcdvisorConfigIsValid(t *testing.T) {
	for _, tc := range []struct {
		members int
		pki     string
	}{
		{1, ""},
		{1, "/pki"},
		{3, ""},
		{3, "/pki"},
	} {
		l := &layout{members: tc.members, pki: tc.pki}
		ms, err := l.plan(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			cfg, err := config.Parse("etcdvisor.yaml", []byte(etcdvisorConfig(m)))
			if err != nil {
				t.Fatalf("%s, member %s: %v\n%s", l.describe(), m.name, err, etcdvisorConfig(m))
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("%s, member %s: %v\n%s", l.describe(), m.name, err, etcdvisorConfig(m))
			}
			flags := plainFlags(m)
			e := cfg.Etcd
			for _, want := range []struct{ flag, got string }{
				{"--name", e.Name},
				{"--initial-cluster", e.InitialCluster},
				{"--initial-cluster-token", e.InitialClusterToken},
				{"--advertise-client-urls", strings.Join(e.AdvertiseClientURLs, ",")},
				{"--initial-advertise-peer-urls", strings.Join(e.InitialAdvertisePeerURLs, ",")},
				{"--data-dir", e.DataDir},
				{"--cert-file", e.ClientTLS.CertFile},
				{"--peer-cert-file", e.PeerTLS.CertFile},
			} {
				if v := flagValue(flags, want.flag); v != want.got {
					t.Errorf("%s, member %s: plain etcd has %s %q, etcdvisor %q", l.describe(), m.name, want.flag, v, want.got)
				}
			}
			tls := tc.pki != ""
			if e.ClientTLS.ClientCertAuthOn() != tls || e.PeerTLS.ClientCertAuthOn() != tls ||
				slices.Contains(flags, "--client-cert-auth") != tls || slices.Contains(flags, "--peer-client-cert-auth") != tls {
				t.Errorf("%s, member %s: client-cert-auth differs from -tls %v", l.describe(), m.name, tls)
			}
			if tls && !strings.HasPrefix(e.ClientTLS.CertFile, filepath.Join(tc.pki, m.name)) {
				t.Errorf("%s, member %s: cert-file %s is not the member's own", l.describe(), m.name, e.ClientTLS.CertFile)
			}
		}
	}
}

// flagValue returns the value after flag in args, "" if absent.
func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}
