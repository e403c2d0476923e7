package pki

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/config"
)

var threeMembers = []Member{{"a", "127.0.0.1"}, {"b", "127.0.0.2"}, {"c", "127.0.0.3"}}

// bootstrapInPlace bootstraps into a new directory with InstallDir set so
// that each config points at the files where Bootstrap wrote them.
func bootstrapInPlace(t *testing.T, members []Member) (dir string, out string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "pki")
	var b bytes.Buffer
	err := Bootstrap(BootstrapOptions{Dir: dir, Members: members, InstallDir: filepath.Join(dir, MemberPlaceholder), Out: &b})
	if err != nil {
		t.Fatal(err)
	}
	return dir, b.String()
}

func loadMemberConfig(t *testing.T, dir, name string) *config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join(dir, name, "etcdvisor.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%s/etcdvisor.yaml does not validate:\n%v", name, err)
	}
	return cfg
}

func TestBootstrapWritesAClusterWhoseConfigsValidateAndWhosePairsPassCheck(t *testing.T) {
	dir, out := bootstrapInPlace(t, threeMembers)

	want := map[string]os.FileMode{
		"ca.crt": 0o644, "ca.key": 0o600,
		"kube-apiserver-etcd-client.crt": 0o644, "kube-apiserver-etcd-client.key": 0o600,
	}
	for _, m := range threeMembers {
		want[m.Name+"/etcdvisor.yaml"] = 0o644
		want[m.Name+"/pki/ca.crt"] = 0o644
		for _, p := range []string{"server", "peer", "etcdvisor-client"} {
			want[m.Name+"/pki/"+p+".crt"] = 0o644
			want[m.Name+"/pki/"+p+".key"] = 0o600
		}
	}
	got := map[string]os.FileMode{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		got[rel] = fi.Mode().Perm()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got files and modes\n%v\nwant\n%v", got, want)
	}

	ca, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	var token string
	for _, m := range threeMembers {
		t.Run(m.Name, func(t *testing.T) {
			cfg := loadMemberConfig(t, dir, m.Name)
			e := cfg.Etcd
			if e.Name != m.Name {
				t.Errorf("got etcd.name %q, want %q", e.Name, m.Name)
			}
			if want := "a=https://127.0.0.1:2380,b=https://127.0.0.2:2380,c=https://127.0.0.3:2380"; e.InitialCluster != want {
				t.Errorf("got initial-cluster %q, want %q", e.InitialCluster, want)
			}
			if token == "" {
				token = e.InitialClusterToken
			}
			if e.InitialClusterToken != token || !regexp.MustCompile(`^etcd-cluster-[0-9a-f]{8}$`).MatchString(token) {
				t.Errorf("got initial-cluster-token %q, want one etcd-cluster-<8 hex> shared by all members (first %q)", e.InitialClusterToken, token)
			}
			for _, tr := range []struct {
				role  string
				tls   config.TLS
				hosts []string
			}{
				{"client", e.ClientTLS, HostsFromURLs(append(slices.Clone(e.ListenClientURLs), e.AdvertiseClientURLs...))},
				{"peer", e.PeerTLS, HostsFromURLs(append(slices.Clone(e.ListenPeerURLs), e.InitialAdvertisePeerURLs...))},
			} {
				if !tr.tls.ClientCertAuthOn() {
					t.Errorf("%s transport: got client-cert-auth off, want on", tr.role)
				}
				warnings, err := Check{Role: tr.role, CertFile: tr.tls.CertFile, KeyFile: tr.tls.KeyFile,
					CAFile: tr.tls.TrustedCAFile, Hosts: tr.hosts}.Run()
				if err != nil || len(warnings) > 0 {
					t.Errorf("%s transport: got warnings %q and error %v, want neither", tr.role, warnings, err)
				}
			}
			assertClientCert(t, ca, filepath.Join(dir, m.Name, "pki", "etcdvisor-client.crt"), EtcdvisorClientName)
		})
	}
	assertClientCert(t, ca, filepath.Join(dir, "kube-apiserver-etcd-client.crt"), APIServerClientName)

	for _, want := range []string{
		"--etcd-servers=https://127.0.0.1:2379,https://127.0.0.2:2379,https://127.0.0.3:2379",
		"--etcd-certfile=/etc/kubernetes/pki/etcd/kube-apiserver-etcd-client.crt",
		"Move " + filepath.Join(dir, "ca.key") + " somewhere offline",
		"a: already in place (" + filepath.Join(dir, "a") + ")",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("got output\n%s\nwant it to contain %q", out, want)
		}
	}
}

// assertClientCert checks file is a client-auth-only certificate from ca
// with common name cn.
func assertClientCert(t *testing.T, ca *KeyPair, file, cn string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parseCerts(data)
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("%s: %v", file, err)
	}
	if c.Subject.CommonName != cn || hasUsage(c, x509.ExtKeyUsageServerAuth) {
		t.Errorf("%s: got CN %q, usages %q; want CN %q, client auth only", file, c.Subject.CommonName, usages(c), cn)
	}
}

func TestBootstrapWritesURLsEtcdCanBindAndDial(t *testing.T) {
	tests := []struct {
		name, host                      string
		listenClient, advertise, listen []string
		serverSANs, peerSANs            string
	}{
		{
			name: "an IPv4 host listens on it and on loopback", host: "10.0.0.1",
			listenClient: []string{"https://10.0.0.1:2379", "https://127.0.0.1:2379"},
			advertise:    []string{"https://10.0.0.1:2379"}, listen: []string{"https://10.0.0.1:2380"},
			serverSANs: "[localhost] [10.0.0.1 127.0.0.1]", peerSANs: "[] [10.0.0.1]",
		},
		{
			name: "loopback is listed once", host: "127.0.0.1",
			listenClient: []string{"https://127.0.0.1:2379"},
			advertise:    []string{"https://127.0.0.1:2379"}, listen: []string{"https://127.0.0.1:2380"},
			serverSANs: "[localhost] [127.0.0.1]", peerSANs: "[] [127.0.0.1]",
		},
		{
			name: "another loopback address does not take 127.0.0.1 from the other members", host: "127.0.0.2",
			listenClient: []string{"https://127.0.0.2:2379"},
			advertise:    []string{"https://127.0.0.2:2379"}, listen: []string{"https://127.0.0.2:2380"},
			serverSANs: "[localhost] [127.0.0.2 127.0.0.1]", peerSANs: "[] [127.0.0.2 127.0.0.1]",
		},
		{
			name: "an IPv6 host goes in brackets", host: "fd00::1",
			listenClient: []string{"https://[fd00::1]:2379", "https://127.0.0.1:2379"},
			advertise:    []string{"https://[fd00::1]:2379"}, listen: []string{"https://[fd00::1]:2380"},
			serverSANs: "[localhost] [fd00::1 127.0.0.1]", peerSANs: "[] [fd00::1]",
		},
		{
			name: "a DNS host listens on every interface, since etcd binds only IPs", host: "etcd-a.example",
			listenClient: []string{"https://0.0.0.0:2379"},
			advertise:    []string{"https://etcd-a.example:2379"}, listen: []string{"https://0.0.0.0:2380"},
			serverSANs: "[etcd-a.example localhost] [127.0.0.1]", peerSANs: "[etcd-a.example] []",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := bootstrapInPlace(t, []Member{{"a", tt.host}})
			e := loadMemberConfig(t, dir, "a").Etcd
			if !slices.Equal(e.ListenClientURLs, tt.listenClient) {
				t.Errorf("got listen-client-urls %q, want %q", e.ListenClientURLs, tt.listenClient)
			}
			if !slices.Equal(e.AdvertiseClientURLs, tt.advertise) {
				t.Errorf("got advertise-client-urls %q, want %q", e.AdvertiseClientURLs, tt.advertise)
			}
			if !slices.Equal(e.ListenPeerURLs, tt.listen) {
				t.Errorf("got listen-peer-urls %q, want %q", e.ListenPeerURLs, tt.listen)
			}
			info, err := Inspect(e.ClientTLS.CertFile, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(info.DNSNames, " ", info.IPs); got != tt.serverSANs {
				t.Errorf("got server cert SANs %s, want %s", got, tt.serverSANs)
			}
			peer, err := Inspect(e.PeerTLS.CertFile, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(peer.DNSNames, " ", peer.IPs); got != tt.peerSANs {
				t.Errorf("got peer cert SANs %s, want %s", got, tt.peerSANs)
			}
		})
	}
}

func TestBootstrapRefusesADirectoryThatIsNotEmpty(t *testing.T) {
	dir, _ := bootstrapInPlace(t, threeMembers)
	before, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	err = Bootstrap(BootstrapOptions{Dir: dir, Members: threeMembers})
	if err == nil || !strings.Contains(err.Error(), "output directory "+dir+" is not empty") {
		t.Fatalf("got %v, want an error saying %s is not empty", err, dir)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if !bytes.Equal(before, after) {
		t.Fatal("got ca.crt replaced, want the first cluster's CA untouched")
	}
}

func TestBootstrapIntoAnEmptyDirectoryWorks(t *testing.T) {
	dir := t.TempDir()
	if err := Bootstrap(BootstrapOptions{Dir: dir, Members: threeMembers[:1]}); err != nil {
		t.Fatal(err)
	}
	cfg := loadMemberConfig(t, dir, "a")
	if want := "/etc/etcdvisor/pki/peer.crt"; cfg.Etcd.PeerTLS.CertFile != want {
		t.Fatalf("got peer cert-file %q, want %q (the default install dir)", cfg.Etcd.PeerTLS.CertFile, want)
	}
}

func TestBootstrapRefusesBadMembersBeforeWritingAnything(t *testing.T) {
	eight := make([]Member, 8)
	for i := range eight {
		eight[i] = Member{fmt.Sprintf("m%d", i), fmt.Sprintf("10.0.0.%d", i+1)}
	}
	tests := []struct {
		name    string
		members []Member
		want    string
	}{
		{"no members", nil, "0 members: an etcd cluster has 1 to 7"},
		{"eight members", eight, "8 members: an etcd cluster has 1 to 7"},
		{"a duplicate name", []Member{{"a", "10.0.0.1"}, {"a", "10.0.0.2"}}, `member name "a" is given twice`},
		{"a duplicate host", []Member{{"a", "10.0.0.1"}, {"b", "10.0.0.1"}}, "members a and b both have host 10.0.0.1"},
		{"one IPv6 host spelt two ways", []Member{{"a", "fd00::1"}, {"b", "[fd00:0::1]"}}, "members a and b both have host"},
		{"one DNS host in two cases", []Member{{"a", "etcd.example"}, {"b", "ETCD.example"}}, "members a and b both have host"},
		{"a name that is a path", []Member{{"../a", "10.0.0.1"}}, `member name "../a": use letters, digits`},
		{"a name taken by a top-level file", []Member{{"ca.key", "10.0.0.1"}}, `member name "ca.key": taken by a file`},
		{"a host with a port", []Member{{"a", "10.0.0.1:2380"}}, `host "10.0.0.1:2380": give the host without a port`},
		{"a URL as the host", []Member{{"a", "https://10.0.0.1"}}, `host "https://10.0.0.1": give a bare IP or DNS name, not a URL`},
		{"an unspecified address", []Member{{"a", "0.0.0.0"}}, "an unspecified address cannot be dialed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			err := Bootstrap(BootstrapOptions{Dir: dir, Members: tt.members})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("got %s created (%v), want nothing written", dir, err)
			}
		})
	}
}

func TestParseMembers(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []Member
		wantErr string
	}{
		{name: "pairs", in: []string{"a=10.0.0.1", " b = etcd-b.example "}, want: []Member{{"a", "10.0.0.1"}, {"b", "etcd-b.example"}}},
		{name: "IPv6", in: []string{"a=fd00::1"}, want: []Member{{"a", "fd00::1"}}},
		{name: "no host", in: []string{"a="}, wantErr: `member "a=": expected name=host`},
		{name: "no equals sign", in: []string{"10.0.0.1"}, wantErr: `member "10.0.0.1": expected name=host`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMembers(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestShippedTLSConfigsAreWhatBootstrapWrites keeps configs/*-node-tls in
// step with Bootstrap: when the template changes, regenerate them with the
// command in configs/three-node-tls/README.md.
func TestShippedTLSConfigsAreWhatBootstrapWrites(t *testing.T) {
	tests := []struct {
		dir     string
		members int
	}{
		{"three-node-tls", 3},
		{"five-node-tls", 5},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			var members []Member
			for i := range tt.members {
				members = append(members, Member{string(rune('a' + i)), fmt.Sprintf("10.0.0.%d", i+1)})
			}
			out := filepath.Join(t.TempDir(), "pki")
			if err := Bootstrap(BootstrapOptions{Dir: out, Members: members, Token: "etcd-cluster-example"}); err != nil {
				t.Fatal(err)
			}
			for _, m := range members {
				shipped := filepath.Join("..", "..", "configs", tt.dir, m.Name+".yaml")
				got, err := os.ReadFile(shipped)
				if err != nil {
					t.Fatal(err)
				}
				want, err := os.ReadFile(filepath.Join(out, m.Name, "etcdvisor.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("got %s:\n%s\nwant what bootstrap writes now:\n%s", shipped, got, want)
				}
			}
		})
	}
}
