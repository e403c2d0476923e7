package etcdrun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/freeport"
)

// testConfig is a single member on free loopback ports in a temp dir.
func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.DefaultWithDataDir(t.TempDir())
	client, peer := freePort(t), freePort(t)
	cfg.Etcd.ListenClientURLs = config.URLList{client}
	cfg.Etcd.AdvertiseClientURLs = config.URLList{client}
	cfg.Etcd.ListenPeerURLs = config.URLList{peer}
	cfg.Etcd.InitialAdvertisePeerURLs = config.URLList{peer}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func freePort(t *testing.T) string {
	t.Helper()
	return "http://" + freeport.TestAddr(t, "127.0.0.1")
}

func startMember(t *testing.T, cfg *config.Config) *Embedded {
	t.Helper()
	m := NewEmbedded(cfg, zaptest.NewLogger(t).Named("etcd"))
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { m.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	select {
	case <-m.Ready():
	case err := <-m.Err():
		t.Fatalf("member failed before ready: %v", err)
	case <-ctx.Done():
		t.Fatal("member not ready within a minute")
	}
	return m
}

func TestEmbeddedMemberServesAndKeepsDataAcrossRestart(t *testing.T) {
	cfg := testConfig(t)
	m := startMember(t, cfg)
	ctx := context.Background()
	if _, err := m.Client().Put(ctx, "/k", "v1"); err != nil {
		t.Fatalf("put: %v", err)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := m.Stop(ctx); err != ErrStopped {
		t.Fatalf("second Stop: got %v, want ErrStopped", err)
	}
	select {
	case err := <-m.Err():
		t.Fatalf("a requested stop was reported as a failure: %v", err)
	default:
	}

	m2 := startMember(t, cfg)
	resp, err := m2.Client().Get(ctx, "/k")
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("got %v after restart, want /k=v1", resp.Kvs)
	}
}

// racingReader fills the member with registry records and starts a
// reader of them, as the daemon's actors read while the member stops. It
// delivers the first error, or nil after a bounded number of reads.
func racingReader(t *testing.T, cli *clientv3.Client) <-chan error {
	t.Helper()
	ctx := context.Background()
	for i := range 200 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/etcdvisor/v1/nodes/n%03d", i), strings.Repeat("x", 512)); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	done := make(chan error, 1)
	go func() {
		for range 100000 {
			if _, err := cli.Get(ctx, "/etcdvisor/", clientv3.WithPrefix(), clientv3.WithSerializable()); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

// A direct call into a closed etcd crashes the process (seen in CI: a
// daemon stopped while an actor read the registry); after Stop, the
// in-process client must fail every call with "server stopped" instead.
func TestEmbeddedClientRefusesCallsAfterStop(t *testing.T) {
	m := startMember(t, testConfig(t))
	cli := m.Client()
	ctx := context.Background()
	readerDone := racingReader(t, cli)
	if err := m.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := <-readerDone; err != nil && !errors.Is(err, rpctypes.ErrStopped) {
		t.Errorf("a read racing Stop: %v, want success or %v", err, rpctypes.ErrStopped)
	}

	calls := map[string]func() error{
		"serializable get": func() error {
			_, err := cli.Get(ctx, "/etcdvisor/", clientv3.WithPrefix(), clientv3.WithSerializable())
			return err
		},
		"put": func() error {
			_, err := cli.Put(ctx, "/k", "v")
			return err
		},
		"member list": func() error {
			_, err := cli.MemberList(ctx)
			return err
		},
		"status": func() error {
			_, err := cli.Status(ctx, "")
			return err
		},
		"lease grant": func() error {
			_, err := cli.Grant(ctx, 10)
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, rpctypes.ErrStopped) {
			t.Errorf("%s after Stop: %v, want %v", name, err, rpctypes.ErrStopped)
		}
	}
}

// etcd that stops on its own closes its backend too, before Stop is
// called: its in-process calls must be refused from then on as well.
func TestEmbeddedClientRefusesCallsWhenEtcdStopsOnItsOwn(t *testing.T) {
	m := startMember(t, testConfig(t))
	cli := m.Client()
	ctx := context.Background()
	readerDone := racingReader(t, cli)
	m.e.Server.Stop() // as when this member is removed from the cluster
	select {
	case err := <-m.Err():
		if err == nil {
			t.Error("etcd stopping on its own was reported without an error")
		}
	case <-time.After(time.Minute):
		t.Fatal("etcd stopping on its own was not reported")
	}
	if err := <-readerDone; err != nil && !errors.Is(err, rpctypes.ErrStopped) {
		t.Errorf("a read racing etcd's stop: %v, want success or %v", err, rpctypes.ErrStopped)
	}
	if _, err := cli.Get(ctx, "/etcdvisor/", clientv3.WithPrefix(), clientv3.WithSerializable()); !errors.Is(err, rpctypes.ErrStopped) {
		t.Errorf("a read after etcd stopped: %v, want %v", err, rpctypes.ErrStopped)
	}
}

func TestEmbeddedStartNamesTheURLWhosePortIsTaken(t *testing.T) {
	cfg := testConfig(t)
	u := strings.TrimPrefix(cfg.Etcd.ListenPeerURLs[0], "http://")
	ln, err := net.Listen("tcp", u)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m := NewEmbedded(cfg, zaptest.NewLogger(t))
	err = m.Start(context.Background())
	if err == nil {
		m.Stop(context.Background())
		t.Fatal("Start succeeded on a taken port")
	}
	want := fmt.Sprintf("etcd.listen-peer-urls %q: address already in use", cfg.Etcd.ListenPeerURLs[0])
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("got %q, want it to contain %q", err, want)
	}
}

func TestCheckDataDirRefusesDataOfAnotherClusterOrMember(t *testing.T) {
	cfg := testConfig(t)
	if err := CheckDataDir(cfg); err != nil {
		t.Fatalf("a fresh data dir: %v", err)
	}
	m := startMember(t, cfg)
	st, err := m.Client().Status(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	m.Stop(context.Background())

	got, ok, err := ReadIdentity(WALDir(cfg))
	if err != nil || !ok {
		t.Fatalf("ReadIdentity: %v %v", ok, err)
	}
	if uint64(got.MemberID) != st.Header.MemberId || uint64(got.ClusterID) != st.Header.ClusterId {
		t.Fatalf("WAL says member %s cluster %s; the running member said %x %x", got.MemberID, got.ClusterID, st.Header.MemberId, st.Header.ClusterId)
	}
	if err := CheckDataDir(cfg); err != nil {
		t.Fatalf("the member's own data dir was refused: %v", err)
	}

	tests := []struct {
		name   string
		change func(c config.Config) *config.Config
		want   string
	}{
		{"another cluster token", func(c config.Config) *config.Config {
			c.Etcd.InitialClusterToken = "other-cluster"
			return &c
		}, `initial-cluster-token "other-cluster" describe cluster`},
		{"the config of a member of another cluster", func(c config.Config) *config.Config {
			// The same cluster of two, but this config is the other member's.
			c.Etcd.InitialCluster = "other=http://127.0.0.9:2380," + c.Etcd.Name + "=" + c.Etcd.InitialAdvertisePeerURLs[0]
			self := c
			self.Etcd.Name = "other"
			self.Etcd.InitialAdvertisePeerURLs = config.URLList{"http://127.0.0.9:2380"}
			return &self
		}, "describe cluster"},
		{"joined a cluster: nothing to compare", func(c config.Config) *config.Config {
			c.Etcd.InitialClusterToken = "other-cluster"
			c.Etcd.InitialClusterState = "existing"
			return &c
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckDataDir(tt.change(*cfg))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestCheckDataDirRefusesAnotherMembersDataOfTheSameCluster(t *testing.T) {
	// Member a of a two-member cluster writes its WAL at bootstrap, before
	// b ever starts; then b's config is pointed at a's data dir.
	a := testConfig(t)
	peerB := freePort(t)
	a.Etcd.InitialCluster = "default=" + a.Etcd.InitialAdvertisePeerURLs[0] + ",b=" + peerB
	m := NewEmbedded(a, zaptest.NewLogger(t))
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok, _ := ReadIdentity(WALDir(a)); ok {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.Stop(context.Background())

	b := *a
	b.Etcd.Name = "b"
	b.Etcd.InitialAdvertisePeerURLs = config.URLList{peerB}
	err := CheckDataDir(&b)
	if err == nil || !strings.Contains(err.Error(), `but this config makes member "b"`) {
		t.Fatalf("got %v, want a refusal naming member b", err)
	}
	if err := CheckDataDir(a); err != nil {
		t.Fatalf("a's own config was refused: %v", err)
	}
}
