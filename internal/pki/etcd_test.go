package pki

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/freeport"
)

// TestABootstrappedClusterFormsOverTLSAndAdmitsOnlyCertifiedClients runs
// three real etcd members (embedded, not through internal/etcdrun, which
// may come to import this package) from Bootstrap's configs and files on
// 127.0.0.1-3: raft over peer TLS, kube-apiserver's pair over client TLS,
// and etcd's grpc-gateway, which dials etcd with the server pair as a
// client certificate.
func TestABootstrappedClusterFormsOverTLSAndAdmitsOnlyCertifiedClients(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ports := freePorts(t, 3)
	err := Bootstrap(BootstrapOptions{Dir: dir, Members: threeMembers, InstallDir: filepath.Join(dir, MemberPlaceholder),
		ClientPort: ports[0], PeerPort: ports[1], MetricsPort: ports[2]})
	if err != nil {
		t.Fatal(err)
	}

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		startErr error
		// etcd logs, and does not fail, when it refuses a peer's
		// connection; raft may still form through the other directions.
		peerRejects atomic.Int64
	)
	countRejects := zap.Hooks(func(e zapcore.Entry) error {
		if e.Message == "rejected connection on peer endpoint" {
			peerRejects.Add(1)
		}
		return nil
	})
	var endpoints []string
	for _, m := range threeMembers {
		cfg := loadMemberConfig(t, dir, m.Name)
		endpoints = append(endpoints, cfg.Etcd.AdvertiseClientURLs...)
		ec := embedConfig(t, cfg, countRejects)
		// The members wait for each other, so they start together.
		wg.Go(func() {
			e, err := embed.StartEtcd(ec)
			if err == nil {
				// HardStop first: a member that never found its peers
				// would otherwise wait for them in Close.
				t.Cleanup(func() { e.Server.HardStop(); e.Close() })
				select {
				case <-e.Server.ReadyNotify():
				case err = <-e.Err():
				case <-time.After(time.Minute):
					err = errors.New("not ready within a minute")
				}
			}
			if err != nil {
				mu.Lock()
				startErr = fmt.Errorf("member %s: %w", ec.Name, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if startErr != nil {
		t.Fatalf("start members: %v", startErr)
	}

	caFile := filepath.Join(dir, "ca.crt")
	apiCrt, apiKey := filepath.Join(dir, APIServerClientName+".crt"), filepath.Join(dir, APIServerClientName+".key")
	tlsCfg := clientConfig(t, caFile, apiCrt, apiKey)

	t.Run("kube-apiserver writes and reads through every member", func(t *testing.T) {
		for i, ep := range endpoints {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: tlsCfg, DialTimeout: ioTimeout})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			key := "/registry/k" + strconv.Itoa(i)
			if _, err := cli.Put(ctx, key, ep); err != nil {
				t.Fatalf("put via %s: %v", ep, err)
			}
			resp, err := cli.Get(ctx, key)
			cancel()
			cli.Close()
			if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != ep {
				t.Fatalf("get via %s: got %v, %v; want %s", ep, resp, err, ep)
			}
		}
	})

	t.Run("the grpc-gateway answers over HTTPS", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: ioTimeout}
		body := `{"key":"` + base64.StdEncoding.EncodeToString([]byte("/registry/k0")) + `"}`
		resp, err := hc.Post(endpoints[0]+"/v3/kv/range", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		want := base64.StdEncoding.EncodeToString([]byte(endpoints[0]))
		if resp.StatusCode != http.StatusOK || !bytes.Contains(got, []byte(want)) {
			t.Fatalf("got %s %s, want 200 with the value %s", resp.Status, got, want)
		}
	})

	t.Run("every member accepts every other as a peer", func(t *testing.T) {
		if n := peerRejects.Load(); n > 0 {
			t.Fatalf("got %d peer connections refused (see the WARN lines above), want none", n)
		}
	})

	t.Run("a client without a certificate is refused", func(t *testing.T) {
		u, err := url.Parse(endpoints[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := roundTrip(u.Host, clientConfig(t, caFile, "", "")); err == nil {
			t.Fatal("got an exchange with etcd, want its TLS listener to refuse a client without a certificate")
		}
	})
}

// embedConfig is the member's etcd config, as the daemon would build it,
// with its data in a temp dir.
func embedConfig(t *testing.T, cfg *config.Config, opts ...zap.Option) *embed.Config {
	t.Helper()
	e := cfg.Etcd
	ec := embed.NewConfig()
	ec.Name = e.Name
	ec.Dir = t.TempDir()
	ec.ListenClientUrls = parseTestURLs(t, e.ListenClientURLs)
	ec.AdvertiseClientUrls = parseTestURLs(t, e.AdvertiseClientURLs)
	ec.ListenPeerUrls = parseTestURLs(t, e.ListenPeerURLs)
	ec.AdvertisePeerUrls = parseTestURLs(t, e.InitialAdvertisePeerURLs)
	ec.InitialCluster = e.InitialCluster
	ec.InitialClusterToken = e.InitialClusterToken
	ec.ClusterState = e.InitialClusterState
	for _, tr := range []struct {
		in  config.TLS
		out *transport.TLSInfo
	}{{e.ClientTLS, &ec.ClientTLSInfo}, {e.PeerTLS, &ec.PeerTLSInfo}} {
		*tr.out = transport.TLSInfo{CertFile: tr.in.CertFile, KeyFile: tr.in.KeyFile,
			TrustedCAFile: tr.in.TrustedCAFile, ClientCertAuth: tr.in.ClientCertAuthOn()}
	}
	ec.Logger = "zap"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel), zaptest.WrapOptions(opts...)).Named(e.Name))
	return ec
}

func parseTestURLs(t *testing.T, in []string) []url.URL {
	t.Helper()
	var out []url.URL
	for _, s := range in {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *u)
	}
	return out
}

// freePorts returns n ports free on 127.0.0.1 when asked; the members use
// them on 127.0.0.2 and 127.0.0.3 as well, where nothing else listens.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		p, err := freeport.Port("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
	}
	return ports
}
