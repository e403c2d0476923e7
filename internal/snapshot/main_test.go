package snapshot

import (
	"context"
	"fmt"
	"math/rand"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/freeport"
)

var (
	etcdutlBin = mustAbs("../../bin/etcdutl")
	etcdctlBin = mustAbs("../../bin/etcdctl")
)

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

func TestMain(m *testing.M) {
	// The comparisons with etcd's own tools need its binaries; they are
	// built as the repository builds them rather than skipped.
	for bin, pkg := range map[string]string{etcdutlBin: "go.etcd.io/etcd/etcdutl/v3", etcdctlBin: "go.etcd.io/etcd/etcdctl/v3"} {
		if _, err := os.Stat(bin); err == nil {
			continue
		}
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = "../../tools"
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	if source != nil {
		source.stop()
		os.RemoveAll(source.dir)
	}
	os.Exit(code)
}

// member is an embedded etcd on free loopback ports.
type member struct {
	e         *embed.Etcd
	cli       *clientv3.Client
	clientURL string
	dir       string
}

func (m *member) stop() {
	m.cli.Close()
	m.e.Close()
}

func freeURL(t testing.TB) string {
	t.Helper()
	return "http://" + freeport.TestAddr(t, "127.0.0.1")
}

// memberSpec is what a member needs to start; a restored data dir must be
// started with the name, peer URL, cluster and token it was restored for.
type memberSpec struct {
	dir, name, peerURL, clientURL, initialCluster, token string
}

func newSpec(t testing.TB, dir string) memberSpec {
	peer := freeURL(t)
	return memberSpec{dir: dir, name: "m1", peerURL: peer, clientURL: freeURL(t),
		initialCluster: "m1=" + peer, token: "snapshot-test"}
}

func (s memberSpec) restoreOptions(path string, ids []age.Identity) RestoreOptions {
	return RestoreOptions{SnapshotPath: path, Identities: ids, Name: s.name, DataDir: s.dir,
		InitialCluster: s.initialCluster, InitialClusterToken: s.token, PeerURLs: []string{s.peerURL}}
}

func startMember(t testing.TB, s memberSpec) *member {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = s.name, s.dir
	pu, _ := url.Parse(s.peerURL)
	cu, _ := url.Parse(s.clientURL)
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.InitialCluster, cfg.InitialClusterToken = s.initialCluster, s.token
	cfg.Logger, cfg.ZapLoggerBuilder = "zap", embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.QuotaBackendBytes = 1 << 30
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd in %s: %v", s.dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		t.Fatalf("etcd in %s failed before ready: %v", s.dir, err)
	case <-time.After(time.Minute):
		e.Close()
		t.Fatalf("etcd in %s not ready within a minute", s.dir)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.clientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	return &member{e: e, cli: cli, clientURL: s.clientURL, dir: s.dir}
}

const (
	sourceKeys    = 3000
	sourceDeleted = 200 // of those, deleted again: tombstones in the key bucket
)

var (
	source     *member
	sourceOnce sync.Once
	sourceErr  error
)

// sourceMember is one member shared by the tests that only read from it,
// holding sourceKeys-sourceDeleted live keys under /k/ (some overwritten,
// some deleted), over 1 MiB of DB.
func sourceMember(t *testing.T) *member {
	t.Helper()
	sourceOnce.Do(func() {
		dir, err := os.MkdirTemp("", "snapshot-source-")
		if err != nil {
			sourceErr = err
			return
		}
		m := startMember(t, newSpec(t, dir))
		if err := fill(m.cli, sourceKeys, 400); err != nil {
			sourceErr = err
			m.stop()
			return
		}
		ctx := context.Background()
		for i := 0; i < sourceDeleted; i++ {
			if _, err := m.cli.Delete(ctx, key(i)); err != nil {
				sourceErr = err
				m.stop()
				return
			}
		}
		source = m
	})
	if sourceErr != nil {
		t.Fatalf("source member: %v", sourceErr)
	}
	if source == nil {
		t.Fatal("source member failed to start in an earlier test")
	}
	return source
}

func key(i int) string { return fmt.Sprintf("/k/%06d", i) }

// value is deterministic, so a restored member can be checked key by key,
// and half random, so zstd has work to do but does not make it trivial.
func value(i, size int) string {
	r := rand.New(rand.NewSource(int64(i)))
	b := make([]byte, size)
	for j := range b {
		if j%2 == 0 {
			b[j] = byte('a' + r.Intn(26))
		} else {
			b[j] = 'x'
		}
	}
	return string(b)
}

// fill puts n keys in transactions of 100 (etcd's default limit is 128).
func fill(cli *clientv3.Client, n, size int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < n; i += 100 {
		var ops []clientv3.Op
		for j := i; j < i+100 && j < n; j++ {
			ops = append(ops, clientv3.OpPut(key(j), value(j, size)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("fill keys %d..: %w", i, err)
		}
	}
	return nil
}

// checkKeys reads the /k/ keys back from a member and compares them with
// what fill wrote and sourceMember deleted.
func checkKeys(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/k/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get /k/: %v", err)
	}
	if got, want := len(resp.Kvs), sourceKeys-sourceDeleted; got != want {
		t.Fatalf("got %d keys under /k/, want %d", got, want)
	}
	for _, i := range []int{sourceDeleted, sourceKeys / 2, sourceKeys - 1} {
		kv := resp.Kvs[i-sourceDeleted]
		if string(kv.Key) != key(i) || string(kv.Value) != value(i, 400) {
			t.Fatalf("got %s=%.20q…, want %s=%.20q…", kv.Key, kv.Value, key(i), value(i, 400))
		}
	}
}

// forms are the four ways Save can write a snapshot.
type form struct {
	name     string
	compress bool
	encrypt  bool
	ext      string
}

var forms = []form{
	{"plain", false, false, ".db"},
	{"zstd", true, false, ".db.zst"},
	{"zstd and age", true, true, ".db.zst.age"},
	{"age", false, true, ".db.age"},
}

func newIdentity(t testing.TB) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// save saves a snapshot of m in form f into dir.
func save(t *testing.T, m *member, dir, name string, f form, id *age.X25519Identity) (Manifest, string) {
	t.Helper()
	o := Options{Dir: dir, Name: name, Compress: f.compress}
	if f.encrypt {
		o.Recipients = []age.Recipient{id.Recipient()}
	}
	man, err := Save(context.Background(), m.cli, m.clientURL, o)
	if err != nil {
		t.Fatalf("Save %s: %v", f.name, err)
	}
	return man, filepath.Join(dir, name+f.ext)
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func wantErrContaining(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want one containing %q", what, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("%s: got %q, want it to contain %q", what, err, want)
	}
}
