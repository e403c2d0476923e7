package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/etcdvisor/etcdvisor/internal/config"
)

func TestLayerRestoreOptionsTakesGivenOverConfigOverDefaults(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "etcdvisor.yaml")
	cfg := `etcd:
  name: b
  data-dir: /var/lib/b
  wal-dir: /wal/b
  initial-advertise-peer-urls: [https://10.0.0.2:2380]
  initial-cluster: a=https://10.0.0.1:2380,b=https://10.0.0.2:2380
  initial-cluster-token: prod
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The command line's values: etcdutl's defaults where nothing is given.
	defaults := RestoreOptions{Name: "default", InitialClusterToken: "etcd-cluster", PeerURLs: []string{"http://localhost:2380"}}
	keep := []string{config.LockName, config.SocketName, config.SnapshotDirName}
	for _, tc := range []struct {
		name   string
		flags  RestoreOptions
		config string
		given  []string
		want   RestoreOptions
	}{
		{"etcdutl's defaults", defaults, "", nil, RestoreOptions{
			Name: "default", DataDir: "default.etcd", InitialCluster: "default=http://localhost:2380",
			InitialClusterToken: "etcd-cluster", PeerURLs: []string{"http://localhost:2380"}, Keep: keep,
		}},
		{"the config's etcd section over the defaults", defaults, cfgPath, nil, RestoreOptions{
			Name: "b", DataDir: "/var/lib/b", WalDir: "/wal/b", InitialCluster: "a=https://10.0.0.1:2380,b=https://10.0.0.2:2380",
			InitialClusterToken: "prod", PeerURLs: []string{"https://10.0.0.2:2380"}, Keep: keep,
		}},
		{"given settings over the config, even empty ones",
			RestoreOptions{Name: "default", DataDir: "/restore", InitialClusterToken: "new", PeerURLs: []string{"http://localhost:2380"}, SkipHashCheck: true},
			cfgPath, []string{"data-dir", "wal-dir", "initial-cluster-token"}, RestoreOptions{
				Name: "b", DataDir: "/restore", InitialCluster: "a=https://10.0.0.1:2380,b=https://10.0.0.2:2380",
				InitialClusterToken: "new", PeerURLs: []string{"https://10.0.0.2:2380"}, SkipHashCheck: true, Keep: keep,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LayerRestoreOptions(tc.flags, tc.config, func(s string) bool { return slices.Contains(tc.given, s) })
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestLayerRestoreOptionsRefusesAMemberWithoutPeerURLs(t *testing.T) {
	_, err := LayerRestoreOptions(RestoreOptions{Name: "a"}, "", nil)
	if !errors.Is(err, ErrNoPeerURLs) {
		t.Errorf("got %v, want ErrNoPeerURLs", err)
	}
}

func TestLayerRestoreOptionsReportsAConfigThatDoesNotLoad(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	_, err := LayerRestoreOptions(RestoreOptions{PeerURLs: []string{"http://localhost:2380"}}, missing, nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an error wrapping os.ErrNotExist", err)
	}
}
