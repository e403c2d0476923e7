package etcdrun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/etcdvisor/etcdvisor/internal/config"
)

// Identity is the member and cluster a data dir belongs to.
type Identity struct {
	MemberID  types.ID
	ClusterID types.ID
}

// WALDir is where the member's WAL lives: wal-dir, or data-dir/member/wal.
func WALDir(cfg *config.Config) string {
	if cfg.Etcd.WalDir != "" {
		return cfg.Etcd.WalDir
	}
	return filepath.Join(cfg.Etcd.DataDir, "member", "wal")
}

// ReadIdentity reads the member and cluster IDs etcd recorded in the WAL.
// ok is false when there is no WAL yet: a fresh data dir. Every WAL file
// starts with the same metadata record, so the newest file is enough and
// purged older files do not matter.
func ReadIdentity(walDir string) (id Identity, ok bool, err error) {
	entries, err := os.ReadDir(walDir)
	if errors.Is(err, fs.ErrNotExist) {
		return Identity{}, false, nil
	}
	if err != nil {
		return Identity{}, false, fmt.Errorf("read WAL dir: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".wal") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return Identity{}, false, nil
	}
	sort.Strings(names) // WAL names are zero-padded seq-index: lexical is numeric
	path := filepath.Join(walDir, names[len(names)-1])
	f, err := os.Open(path)
	if err != nil {
		return Identity{}, false, fmt.Errorf("open WAL: %w", err)
	}
	defer f.Close()
	dec := wal.NewDecoder(fileutil.NewFileReader(f))
	for {
		var rec walpb.Record
		if err := dec.Decode(&rec); err != nil {
			return Identity{}, false, fmt.Errorf("read WAL %s: no metadata record: %w", path, err)
		}
		if rec.GetType() != wal.MetadataType {
			continue
		}
		var md etcdserverpb.Metadata
		if err := proto.Unmarshal(rec.GetData(), &md); err != nil {
			return Identity{}, false, fmt.Errorf("read WAL %s: bad metadata: %w", path, err)
		}
		return Identity{MemberID: types.ID(md.GetNodeID()), ClusterID: types.ID(md.GetClusterID())}, true, nil
	}
}

// ExpectedIdentity is the identity etcd gives this member when it
// bootstraps a new cluster: both IDs are hashes of initial-cluster and the
// token, so every member can compute them.
func ExpectedIdentity(cfg *config.Config) (Identity, error) {
	urls, err := types.NewURLsMap(cfg.InitialClusterOrSelf())
	if err != nil {
		return Identity{}, fmt.Errorf("etcd.initial-cluster: %w", err)
	}
	cl, err := membership.NewClusterFromURLsMap(zap.NewNop(), cfg.Etcd.InitialClusterToken, urls)
	if err != nil {
		return Identity{}, fmt.Errorf("etcd.initial-cluster: %w", err)
	}
	m := cl.MemberByName(cfg.Etcd.Name)
	if m == nil {
		return Identity{}, fmt.Errorf("etcd.initial-cluster does not name this member %q", cfg.Etcd.Name)
	}
	return Identity{MemberID: m.ID, ClusterID: cl.ID()}, nil
}

// CheckDataDir refuses a data dir that holds another cluster or another
// member than this config describes. etcd itself would start from what
// the WAL says and ignore initial-cluster, silently running the wrong
// member; an operator who pointed two configs at one disk must hear it.
//
// A member that joined a running cluster (initial-cluster-state existing)
// got a random ID from the cluster, so there is nothing to compare.
func CheckDataDir(cfg *config.Config) error {
	have, ok, err := ReadIdentity(WALDir(cfg))
	if err != nil {
		return fmt.Errorf("etcd.data-dir %q: %w", cfg.Etcd.DataDir, err)
	}
	if !ok || cfg.Etcd.InitialClusterState != "new" {
		return nil
	}
	want, err := ExpectedIdentity(cfg)
	if err != nil {
		return err
	}
	const fix = "point etcd.data-dir at this member's own data, fix initial-cluster and initial-cluster-token, " +
		"or move the old data dir away to start this member empty"
	switch {
	case have.ClusterID != want.ClusterID:
		return fmt.Errorf("etcd.data-dir %q holds cluster %s, but initial-cluster and initial-cluster-token %q describe cluster %s; %s",
			cfg.Etcd.DataDir, have.ClusterID, cfg.Etcd.InitialClusterToken, want.ClusterID, fix)
	case have.MemberID != want.MemberID:
		return fmt.Errorf("etcd.data-dir %q holds member %s of cluster %s, but this config makes member %q %s; %s",
			cfg.Etcd.DataDir, have.MemberID, have.ClusterID, cfg.Etcd.Name, want.MemberID, fix)
	}
	return nil
}
