package snapshot

import (
	"errors"

	"github.com/etcdvisor/etcdvisor/internal/config"
)

// ErrNoPeerURLs is returned by LayerRestoreOptions when the layered
// settings leave the new member without a peer URL.
var ErrNoPeerURLs = errors.New("snapshot restore: --initial-advertise-peer-urls must name at least one URL")

// LayerRestoreOptions layers the settings of a restore as the command line
// takes them: etcdutl's defaults, then the etcd section of the etcdvisor
// config at configPath (none when ""), then the settings given.
//
// flags holds the command line's values, the defaults of those not given
// included; its other fields (SnapshotPath, Identities, BumpRevision, ...)
// pass through. given reports whether a setting was given, by its etcdutl
// flag name, which is also its key in the config's etcd section: name,
// data-dir, wal-dir, initial-cluster, initial-cluster-token and
// initial-advertise-peer-urls; nil means none was.
//
// The result holds the defaults Restore would pick for InitialCluster and
// DataDir, so a summary can say what was made, and Keep holds etcdvisor's
// own files, which may share a data dir with etcd's. A config that does
// not load is an error from config.Load; no peer URL at all is
// ErrNoPeerURLs.
func LayerRestoreOptions(flags RestoreOptions, configPath string, given func(setting string) bool) (RestoreOptions, error) {
	ro := flags
	// etcdvisor's own files may share the data dir; etcd's may not.
	ro.Keep = []string{config.LockName, config.SocketName, config.SnapshotDirName}
	if configPath != "" {
		cfg, err := config.Load(configPath)
		if err != nil {
			return ro, err
		}
		e := cfg.Etcd
		for setting, take := range map[string]func(){
			"name":                        func() { ro.Name = e.Name },
			"data-dir":                    func() { ro.DataDir = e.DataDir },
			"wal-dir":                     func() { ro.WalDir = e.WalDir },
			"initial-cluster":             func() { ro.InitialCluster = e.InitialCluster },
			"initial-cluster-token":       func() { ro.InitialClusterToken = e.InitialClusterToken },
			"initial-advertise-peer-urls": func() { ro.PeerURLs = e.InitialAdvertisePeerURLs },
		} {
			if given == nil || !given(setting) {
				take()
			}
		}
	}
	if len(ro.PeerURLs) == 0 {
		return ro, ErrNoPeerURLs
	}
	if ro.InitialCluster == "" {
		ro.InitialCluster = ro.Name + "=" + ro.PeerURLs[0]
	}
	if ro.DataDir == "" {
		ro.DataDir = ro.Name + ".etcd"
	}
	return ro, nil
}
