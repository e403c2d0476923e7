package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// checkFixture is a member's pki directory with a good server pair.
type checkFixture struct {
	dir      string
	now      time.Time
	ca       *KeyPair
	caFile   string
	crt, key string // the good pair: server, SANs localhost and 127.0.0.1
}

func newCheckFixture(t *testing.T) checkFixture {
	t.Helper()
	f := checkFixture{dir: t.TempDir(), ca: newTestCA(t, CACommonName)}
	f.now = time.Now()
	f.caFile = writeTestCA(t, f.dir, f.ca)
	f.crt, f.key = writeTestPair(t, f.dir, "server", mustIssue(t, f.ca,
		Request{Kind: Server, CommonName: "a", DNSNames: []string{"localhost"}, IPs: []net.IP{loopback}}))
	return f
}

// pair issues req from ca and writes it as name.
func (f checkFixture) pair(t *testing.T, ca *KeyPair, name string, req Request) (crt, key string) {
	t.Helper()
	if ca == nil {
		ca = f.ca
	}
	if req.CommonName == "" {
		req.CommonName = name
	}
	return writeTestPair(t, f.dir, name, mustIssue(t, ca, req))
}

// signedForTest makes a CA (parent nil) or a server leaf for 127.0.0.1
// with any validity period, which Issue and NewCA refuse to produce.
func signedForTest(t *testing.T, parent *KeyPair, cn string, notBefore, notAfter time.Time, eku ...x509.ExtKeyUsage) *KeyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
	}
	parentCert, signer := tmpl, crypto.Signer(key)
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		if len(eku) > 0 {
			tmpl.ExtKeyUsage = eku
		}
		tmpl.IPAddresses = []net.IP{loopback}
		parentCert, signer = parent.Cert, parent.Key
	}
	kp, err := sign(tmpl, parentCert, key, signer)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func (f checkFixture) path(name string) string { return filepath.Join(f.dir, name) }

func TestCheckRunNamesTheFileAndTheReason(t *testing.T) {
	onLoopback := []net.IP{loopback}
	tests := []struct {
		name  string
		setup func(t *testing.T, f checkFixture) Check
		// wantErr holds one entry per joined error: text that error must contain.
		wantErr  func(c Check) []string
		wantWarn func(c Check) []string
	}{
		{
			name: "a missing cert file",
			setup: func(t *testing.T, f checkFixture) Check {
				return Check{Role: "client", CertFile: f.path("nope.crt"), KeyFile: f.key, CAFile: f.caFile}
			},
			wantErr: func(c Check) []string { return []string{"client cert " + c.CertFile + ": does not exist"} },
		},
		{
			name: "a missing key file",
			setup: func(t *testing.T, f checkFixture) Check {
				return Check{Role: "peer", CertFile: f.crt, KeyFile: f.path("nope.key"), CAFile: f.caFile}
			},
			wantErr: func(c Check) []string { return []string{"peer key " + c.KeyFile + ": does not exist"} },
		},
		{
			name: "a directory where the cert file should be",
			setup: func(t *testing.T, f checkFixture) Check {
				if err := os.Mkdir(f.path("dir.crt"), 0o755); err != nil {
					t.Fatal(err)
				}
				return Check{Role: "client", CertFile: f.path("dir.crt"), KeyFile: f.key, CAFile: f.caFile}
			},
			wantErr: func(c Check) []string { return []string{"client cert " + c.CertFile + ": is a directory, not a file"} },
		},
		{
			name: "a key that is not a key",
			setup: func(t *testing.T, f checkFixture) Check {
				return Check{Role: "client", CertFile: f.crt, KeyFile: f.caFile, CAFile: f.caFile}
			},
			wantErr: func(c Check) []string {
				return []string{"client key " + c.KeyFile + ": holds a certificate, not a private key"}
			},
		},
		{
			name: "a key from another pair",
			setup: func(t *testing.T, f checkFixture) Check {
				_, otherKey := f.pair(t, nil, "other", Request{Kind: Server, IPs: onLoopback})
				return Check{Role: "client", CertFile: f.crt, KeyFile: otherKey, CAFile: f.caFile}
			},
			wantErr: func(c Check) []string {
				return []string{"client key " + c.KeyFile + " does not match cert " + c.CertFile}
			},
		},
		{
			name: "a cert from another CA",
			setup: func(t *testing.T, f checkFixture) Check {
				crt, key := f.pair(t, newTestCA(t, "other-ca"), "peer", Request{Kind: Peer, IPs: onLoopback})
				return Check{Role: "peer", CertFile: crt, KeyFile: key, CAFile: f.caFile}
			},
			wantErr: func(c Check) []string {
				return []string{fmt.Sprintf(`peer cert %s: not signed by the CA in %s (issuer "CN=other-ca")`, c.CertFile, c.CAFile)}
			},
		},
		{
			name: "a missing CA file",
			setup: func(t *testing.T, f checkFixture) Check {
				return Check{Role: "client", CertFile: f.crt, KeyFile: f.key, CAFile: f.path("nope-ca.crt")}
			},
			wantErr: func(c Check) []string { return []string{"client trusted CA " + c.CAFile + ": does not exist"} },
		},
		{
			name: "an expired CA",
			setup: func(t *testing.T, f checkFixture) Check {
				old := signedForTest(t, nil, "old-ca", f.now.Add(-3*DefaultValidity), f.now.Add(-DefaultValidity))
				crt, key := writeTestPair(t, f.dir, "server-old",
					signedForTest(t, old, "a", f.now.Add(-2*DefaultValidity), f.now.Add(DefaultValidity)))
				return Check{Role: "client", CertFile: crt, KeyFile: key, CAFile: writeTestCA(t, t.TempDir(), old), Now: f.now}
			},
			wantErr: func(c Check) []string {
				return []string{fmt.Sprintf(`client trusted CA %s: "CN=old-ca" expired %s (365 days ago)`, c.CAFile, day(c.Now.Add(-DefaultValidity)))}
			},
		},
		{
			name: "an expired cert",
			setup: func(t *testing.T, f checkFixture) Check {
				crt, key := f.pair(t, nil, "peer", Request{Kind: Peer, IPs: onLoopback,
					NotBefore: f.now.Add(-2 * DefaultValidity), Validity: DefaultValidity})
				return Check{Role: "peer", CertFile: crt, KeyFile: key, CAFile: f.caFile, Now: f.now}
			},
			wantErr: func(c Check) []string {
				return []string{fmt.Sprintf("peer cert %s: expired %s (365 days ago); issue a new one with: etcdvisor pki issue peer peer --ca CA_DIR --ip 127.0.0.1",
					c.CertFile, day(c.Now.Add(-DefaultValidity)))}
			},
		},
		{
			name: "a cert that is not valid yet",
			setup: func(t *testing.T, f checkFixture) Check {
				crt, key := f.pair(t, nil, "future", Request{Kind: Server, IPs: onLoopback, NotBefore: f.now.Add(72 * time.Hour)})
				return Check{Role: "client", CertFile: crt, KeyFile: key, CAFile: f.caFile, Now: f.now}
			},
			wantErr: func(c Check) []string {
				return []string{fmt.Sprintf("client cert %s: not valid until %s (in 3 days); is this host's clock right?",
					c.CertFile, c.Now.Add(72*time.Hour).UTC().Format(time.RFC3339))}
			},
		},
		{
			name: "a host IP the cert does not cover",
			setup: func(t *testing.T, f checkFixture) Check {
				return Check{Role: "client", CertFile: f.crt, KeyFile: f.key, CAFile: f.caFile, Hosts: []string{"127.0.0.1", "10.0.0.7"}}
			},
			wantErr: func(c Check) []string {
				return []string{"client cert " + c.CertFile + ": does not cover 10.0.0.7 (it has DNS [localhost] IP [127.0.0.1]); " +
					"issue a new one with: etcdvisor pki issue server server --ca CA_DIR --host localhost --ip 127.0.0.1 --ip 10.0.0.7"}
			},
		},
		{
			name: "a host name the cert does not cover",
			setup: func(t *testing.T, f checkFixture) Check {
				return Check{Role: "client", CertFile: f.crt, KeyFile: f.key, CAFile: f.caFile, Hosts: []string{"localhost", "b.example"}}
			},
			wantErr: func(c Check) []string {
				return []string{"client cert " + c.CertFile + ": does not cover b.example (it has DNS [localhost] IP [127.0.0.1])"}
			},
		},
		{
			name: "a client-only cert on etcd's listener",
			setup: func(t *testing.T, f checkFixture) Check {
				crt, key := f.pair(t, nil, "client", Request{Kind: Client, IPs: onLoopback})
				return Check{Role: "client", CertFile: crt, KeyFile: key, CAFile: f.caFile}
			},
			wantErr: func(c Check) []string {
				return []string{"client cert " + c.CertFile + ": not usable for server auth (it has digital signature, client auth); etcd serves with it"}
			},
		},
		{
			name: "a peer cert without client auth",
			setup: func(t *testing.T, f checkFixture) Check {
				crt, key := writeTestPair(t, f.dir, "peer",
					signedForTest(t, f.ca, "a", f.now.Add(-time.Hour), f.now.Add(time.Hour), x509.ExtKeyUsageServerAuth))
				return Check{Role: "peer", CertFile: crt, KeyFile: key, CAFile: f.caFile}
			},
			wantErr: func(c Check) []string {
				return []string{"peer cert " + c.CertFile + ": has no client auth usage (it has server auth); members dial each other with it"}
			},
		},
		{
			name: "a server cert without client auth is a warning",
			setup: func(t *testing.T, f checkFixture) Check {
				crt, key := writeTestPair(t, f.dir, "server-only",
					signedForTest(t, f.ca, "a", f.now.Add(-time.Hour), f.now.Add(time.Hour), x509.ExtKeyUsageServerAuth))
				return Check{Role: "client", CertFile: crt, KeyFile: key, CAFile: f.caFile}
			},
			wantWarn: func(c Check) []string {
				return []string{"client cert " + c.CertFile + ": has no client auth usage (it has server auth); etcd's grpc-gateway dials etcd with it"}
			},
		},
		{
			name: "a client key others can read is a warning",
			setup: func(t *testing.T, f checkFixture) Check {
				if err := os.Chmod(f.key, 0o644); err != nil {
					t.Fatal(err)
				}
				return Check{Role: "client", CertFile: f.crt, KeyFile: f.key, CAFile: f.caFile}
			},
			wantWarn: func(c Check) []string {
				return []string{"client key " + c.KeyFile + ": mode 0644 lets group or others read or write it; chmod 600 " + c.KeyFile}
			},
		},
		{
			name: "a peer key others can read is an error",
			setup: func(t *testing.T, f checkFixture) Check {
				crt, key := f.pair(t, nil, "peer", Request{Kind: Peer, IPs: onLoopback})
				if err := os.Chmod(key, 0o640); err != nil {
					t.Fatal(err)
				}
				return Check{Role: "peer", CertFile: crt, KeyFile: key, CAFile: f.caFile}
			},
			wantErr: func(c Check) []string {
				return []string{"peer key " + c.KeyFile + ": mode 0640 lets group or others read or write it; chmod 600 " + c.KeyFile +
					" and chown it to the user etcdvisor runs as (the peer key lets anyone join the cluster)"}
			},
		},
		{
			name: "every independent problem is reported at once",
			setup: func(t *testing.T, f checkFixture) Check {
				crt, key := f.pair(t, nil, "peer", Request{Kind: Peer, IPs: onLoopback,
					NotBefore: f.now.Add(-2 * DefaultValidity), Validity: DefaultValidity})
				if err := os.Chmod(key, 0o644); err != nil {
					t.Fatal(err)
				}
				return Check{Role: "peer", CertFile: crt, KeyFile: key, CAFile: f.caFile, Hosts: []string{"10.0.0.7"}, Now: f.now}
			},
			wantErr: func(c Check) []string {
				return []string{
					"peer cert " + c.CertFile + ": expired",
					"peer cert " + c.CertFile + ": does not cover 10.0.0.7",
					"peer key " + c.KeyFile + ": mode 0644",
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.setup(t, newCheckFixture(t))
			warnings, err := c.Run()

			var wantErr, wantWarn []string
			if tt.wantErr != nil {
				wantErr = tt.wantErr(c)
			}
			if tt.wantWarn != nil {
				wantWarn = tt.wantWarn(c)
			}
			errs := splitErrors(err)
			if len(errs) != len(wantErr) {
				t.Fatalf("got %d errors:\n%v\nwant %d:\n%s", len(errs), err, len(wantErr), strings.Join(wantErr, "\n"))
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), wantErr[i]) {
					t.Errorf("got error\n  %s\nwant it to contain\n  %s", e, wantErr[i])
				}
			}
			if len(warnings) != len(wantWarn) {
				t.Fatalf("got warnings %q, want %d", warnings, len(wantWarn))
			}
			for i, w := range warnings {
				if !strings.Contains(w, wantWarn[i]) {
					t.Errorf("got warning\n  %s\nwant it to contain\n  %s", w, wantWarn[i])
				}
			}
		})
	}
}

func TestCheckRunPassesGoodPairsWithNoWarnings(t *testing.T) {
	f := newCheckFixture(t)
	peerCrt, peerKey := f.pair(t, nil, "peer", Request{Kind: Peer, DNSNames: []string{"a.example"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}})
	tests := []struct {
		name  string
		check Check
	}{
		{"client transport", Check{Role: "client", CertFile: f.crt, KeyFile: f.key, CAFile: f.caFile, Hosts: []string{"127.0.0.1", "localhost"}}},
		{"peer transport", Check{Role: "peer", CertFile: peerCrt, KeyFile: peerKey, CAFile: f.caFile, Hosts: []string{"10.0.0.1", "A.example"}}},
		{"no CA file skips the chain", Check{Role: "peer", CertFile: peerCrt, KeyFile: peerKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warnings, err := tt.check.Run()
			if err != nil || len(warnings) > 0 {
				t.Fatalf("got warnings %q and error %v, want neither", warnings, err)
			}
		})
	}
}

func TestCheckRunRefusesAnUnknownRole(t *testing.T) {
	f := newCheckFixture(t)
	_, err := Check{Role: "server", CertFile: f.crt, KeyFile: f.key}.Run()
	if err == nil || !strings.Contains(err.Error(), `role "server": expected client or peer`) {
		t.Fatalf("got %v, want an error naming the role", err)
	}
}

func TestHostsFromURLs(t *testing.T) {
	tests := []struct {
		name string
		urls []string
		want []string
	}{
		{"IPv4 and loopback", []string{"https://10.0.0.1:2379", "https://127.0.0.1:2379"}, []string{"10.0.0.1", "127.0.0.1"}},
		{"IPv6 without brackets", []string{"https://[fd00::1]:2380"}, []string{"fd00::1"}},
		{"duplicates once", []string{"https://a.example:2379", "https://a.example:2380"}, []string{"a.example"}},
		{"unspecified addresses left out", []string{"https://0.0.0.0:2379", "https://[::]:2379", "https://b.example:2379"}, []string{"b.example"}},
		{"unparsable URLs skipped", []string{"://nope", "https://c.example:2379"}, []string{"c.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HostsFromURLs(tt.urls); !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
