package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewCAMakesACAThatSignsLeavesOnly(t *testing.T) {
	ca := newTestCA(t, CACommonName)
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("got IsCA %t, basic constraints %t, MaxPathLen %d (zero %t); want a CA with path length 0",
			c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("got key usage %v, want cert sign and CRL sign", usages(c))
	}
	if k, ok := ca.Key.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("got key %T, want ECDSA P-256", ca.Key)
	}
	if len(c.SubjectKeyId) != 20 {
		t.Errorf("got a %d-byte SubjectKeyId, want 20", len(c.SubjectKeyId))
	}
}

func TestIssueSetsUsagesByKind(t *testing.T) {
	ca := newTestCA(t, CACommonName)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tests := []struct {
		kind Kind
		want []x509.ExtKeyUsage
	}{
		{Server, both},
		{Peer, both},
		{Client, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			kp := mustIssue(t, ca, Request{Kind: tt.kind, CommonName: "x", IPs: []net.IP{loopback}})
			c := kp.Cert
			if !slices.Equal(c.ExtKeyUsage, tt.want) {
				t.Errorf("got ExtKeyUsage %v, want %v", c.ExtKeyUsage, tt.want)
			}
			if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("got IsCA %t, usages %q; want a leaf for digital signatures", c.IsCA, usages(c))
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("got serial %x, want a positive number of at most 128 bits", c.SerialNumber)
			}
			if len(c.SubjectKeyId) != 20 || !bytes.Equal(c.AuthorityKeyId, ca.Cert.SubjectKeyId) {
				t.Errorf("got SubjectKeyId %x, AuthorityKeyId %x; want 20 bytes and the CA's %x", c.SubjectKeyId, c.AuthorityKeyId, ca.Cert.SubjectKeyId)
			}
			for _, u := range tt.want {
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					t.Errorf("verify for usage %v: %v", u, err)
				}
			}
		})
	}
}

func TestIssueGivesEveryCertificateItsOwnSerial(t *testing.T) {
	ca := newTestCA(t, CACommonName)
	a := mustIssue(t, ca, Request{Kind: Client, CommonName: "a"})
	b := mustIssue(t, ca, Request{Kind: Client, CommonName: "a"})
	if a.Cert.SerialNumber.Cmp(b.Cert.SerialNumber) == 0 {
		t.Fatalf("got serial %x twice, want two", a.Cert.SerialNumber)
	}
}

func TestIssueRefusesBadRequests(t *testing.T) {
	ca := newTestCA(t, CACommonName)
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"a server cert without SANs", Request{Kind: Server, CommonName: "a"}, `issue server certificate "a": needs at least one DNS name or IP`},
		{"a peer cert without SANs", Request{Kind: Peer, CommonName: "a"}, `issue peer certificate "a": needs at least one DNS name or IP`},
		{"an unknown kind", Request{Kind: "admin", CommonName: "a"}, `unknown certificate kind "admin"; expected server, peer or client`},
		{"no common name", Request{Kind: Client}, "the common name must not be empty"},
		{"a URL as a DNS name", Request{Kind: Server, CommonName: "a", DNSNames: []string{"https://a.example"}}, `DNS name "https://a.example" is not a host name`},
		{"a host:port as a DNS name", Request{Kind: Server, CommonName: "a", DNSNames: []string{"a.example:2379"}}, `DNS name "a.example:2379" is not a host name`},
		{"a certificate that outlives its CA", Request{Kind: Client, CommonName: "a", Validity: 2 * DefaultCAValidity}, "after its CA"},
		{"a negative validity", Request{Kind: Client, CommonName: "a", Validity: -time.Hour}, "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Issue(ca, tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestIssueMovesIPsGivenAsDNSNamesToIPSANs(t *testing.T) {
	kp := mustIssue(t, newTestCA(t, CACommonName), Request{Kind: Server, CommonName: "a",
		DNSNames: []string{"10.0.0.1", "[fd00::1]", "A.Example", "a.example"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}})
	var ips []string
	for _, ip := range kp.Cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"10.0.0.1", "fd00::1"}; !slices.Equal(ips, want) {
		t.Errorf("got IP SANs %q, want %q", ips, want)
	}
	if want := []string{"a.example"}; !slices.Equal(kp.Cert.DNSNames, want) {
		t.Errorf("got DNS SANs %q, want %q", kp.Cert.DNSNames, want)
	}
}

func TestLoadCAReadsWhatCreateCAWrote(t *testing.T) {
	dir := t.TempDir()
	ca, certPath, keyPath, err := CreateCA(dir, "my-ca", DefaultCAValidity, false)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) || !bytes.Equal(loaded.KeyPEM, ca.KeyPEM) {
		t.Fatal("got a different CA back, want the one written")
	}
	// And IssueFiles signs with it.
	kp, crt, _, err := IssueFiles(dir, filepath.Join(dir, "out"), "peer", Request{Kind: Peer, CommonName: "a", IPs: []net.IP{loopback}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("got a certificate not signed by the CA: %v", err)
	}
	if crt != filepath.Join(dir, "out", "peer.crt") {
		t.Fatalf("got %s, want out/peer.crt", crt)
	}
}

func TestLoadCANamesTheFile(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, CACommonName)
	caCrt, caKey := writeTestPair(t, dir, "ca", ca)
	leafCrt, leafKey := writeTestPair(t, dir, "leaf", mustIssue(t, ca, Request{Kind: Client, CommonName: "c"}))
	_, otherKey := writeTestPair(t, dir, "other", newTestCA(t, "other"))
	garbage := filepath.Join(dir, "garbage.key")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		crt, key  string
		wantError string
	}{
		{"a missing cert", filepath.Join(dir, "nope.crt"), caKey, filepath.Join(dir, "nope.crt") + ": no such file"},
		{"a leaf instead of a CA", leafCrt, leafKey, "CA cert " + leafCrt + `: "CN=c" is not a CA certificate`},
		{"a key that is not a key", caCrt, garbage, "CA key " + garbage + ": no private key in it"},
		{"another CA's key", caCrt, otherKey, "CA key " + otherKey + " does not match CA cert " + caCrt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadCA(tt.crt, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.wantError) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantError)
			}
		})
	}
}

func TestParseKind(t *testing.T) {
	for _, s := range []string{"server", "peer", "client"} {
		if k, err := ParseKind(s); err != nil || string(k) != s {
			t.Errorf("ParseKind(%q): got %q, %v; want %q", s, k, err, s)
		}
	}
	if _, err := ParseKind("Server"); err == nil || !strings.Contains(err.Error(), "expected server, peer or client") {
		t.Errorf("ParseKind(\"Server\"): got %v, want an error naming the kinds", err)
	}
}
