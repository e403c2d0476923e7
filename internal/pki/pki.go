// Package pki issues the CA and certificates an etcd cluster needs and
// checks them before etcd starts.
//
// Every key is ECDSA P-256: small, fast to sign with, and accepted by etcd,
// kube-apiserver and every TLS stack they meet. Everything is done with Go's
// crypto/x509, so there is no cfssl or openssl to install on the hosts.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Kind is what a certificate is for; it decides the extended key usages.
type Kind string

// The kinds of leaf certificate an etcd cluster uses.
const (
	// Server is etcd's client-facing listener. It carries client auth too
	// because etcd's grpc-gateway dials etcd's own gRPC port with it.
	Server Kind = "server"
	// Peer is raft between members; peers dial each other, so it serves
	// and it is a client.
	Peer Kind = "peer"
	// Client is kube-apiserver, etcdctl and etcdvisor talking to etcd.
	Client Kind = "client"
)

// Defaults.
const (
	// DefaultValidity is a leaf's validity when a Request gives none.
	DefaultValidity = 365 * 24 * time.Hour
	// DefaultCAValidity is how long Bootstrap's CA lasts: long enough that
	// leaves are reissued many times under it.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so a member whose clock runs a little
	// behind the issuer's accepts a certificate made a moment ago.
	clockSkew = 5 * time.Minute
)

// serialLimit bounds serial numbers to 128 random bits: unique in
// practice, and well inside RFC 5280's 20 octets.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// ParseKind returns the Kind named s, or an error naming the allowed kinds.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case Server, Peer, Client:
		return k, nil
	}
	return "", fmt.Errorf("unknown certificate kind %q; expected server, peer or client", s)
}

func (k Kind) extKeyUsage() ([]x509.ExtKeyUsage, error) {
	switch k {
	case Server, Peer:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, nil
	case Client:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil
	}
	return nil, fmt.Errorf("unknown certificate kind %q; expected server, peer or client", string(k))
}

// KeyPair is a certificate and its private key, parsed and PEM-encoded.
type KeyPair struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte // PKCS#8 "PRIVATE KEY"
}

// NewCA makes a self-signed CA that may sign leaves but no further CAs
// (MaxPathLen 0): an etcd cluster needs no intermediates, and a CA that
// cannot make them cannot be used to build a hidden one.
func NewCA(commonName string, validity time.Duration) (*KeyPair, error) {
	if strings.TrimSpace(commonName) == "" {
		return nil, errors.New("new CA: the common name must not be empty")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("new CA %q: validity %s must be positive", commonName, validity)
	}
	key, serial, skid, err := freshKey()
	if err != nil {
		return nil, fmt.Errorf("new CA %q: %w", commonName, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          skid,
	}
	kp, err := sign(tmpl, tmpl, key, key)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: %w", commonName, err)
	}
	return kp, nil
}

// LoadCA reads a CA certificate and its key, as NewCA and `etcdvisor pki
// ca` write them. Each error names the file it is about.
func LoadCA(certFile, keyFile string) (*KeyPair, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read CA cert: %w", err)
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA cert %s: %w", certFile, err)
	}
	cert := certs[0]
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("CA cert %s: %q is not a CA certificate (no CA basic constraint)", certFile, cert.Subject)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key %s: %w", keyFile, err)
	}
	if !samePublicKey(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("CA key %s does not match CA cert %s", keyFile, certFile)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("CA key %s: %w", keyFile, err)
	}
	return &KeyPair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	}, nil
}

// Request describes one leaf certificate.
type Request struct {
	Kind       Kind
	CommonName string
	// DNSNames and IPs are the subject alternative names: a TLS client
	// checks the host it dialed against them, never against CommonName.
	// A DNS name that is an IP address is moved to IPs, where Go and etcd
	// look for it.
	DNSNames []string
	IPs      []net.IP
	// Validity is how long the certificate lasts: from NotBefore when that
	// is set, else from now. Zero means DefaultValidity.
	Validity time.Duration
	// NotBefore defaults to now minus five minutes, for clock skew. Tests
	// set past dates to make expired certificates.
	NotBefore time.Time
}

// Issue signs a new ECDSA P-256 leaf for req with ca.
//
// A server or peer certificate must name at least one DNS name or IP:
// without one no client can verify it. A certificate may not outlive its
// CA: it would fail on the day the CA expires, whatever its own NotAfter.
func Issue(ca *KeyPair, req Request) (*KeyPair, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("issue: no CA")
	}
	if !ca.Cert.IsCA {
		return nil, fmt.Errorf("issue: %q is not a CA certificate", ca.Cert.Subject)
	}
	what := fmt.Sprintf("issue %s certificate %q", req.Kind, req.CommonName)
	eku, err := req.Kind.extKeyUsage()
	if err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	if strings.TrimSpace(req.CommonName) == "" {
		return nil, fmt.Errorf("issue %s certificate: the common name must not be empty", req.Kind)
	}
	dnsNames, ips, err := sans(req.DNSNames, req.IPs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if req.Kind != Client && len(dnsNames) == 0 && len(ips) == 0 {
		return nil, fmt.Errorf("%s: needs at least one DNS name or IP, the address clients dial it at", what)
	}

	now := time.Now()
	validity := req.Validity
	switch {
	case validity == 0:
		validity = DefaultValidity
	case validity < 0:
		return nil, fmt.Errorf("%s: validity %s must be positive", what, validity)
	}
	notBefore, notAfter := now.Add(-clockSkew), now.Add(validity)
	if !req.NotBefore.IsZero() {
		notBefore, notAfter = req.NotBefore, req.NotBefore.Add(validity)
	}
	if now.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("%s: the CA %q expired on %s; make a new CA", what, ca.Cert.Subject, day(ca.Cert.NotAfter))
	}
	if notAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("%s: it would be valid until %s, after its CA %q expires (%s); ask for a shorter validity",
			what, day(notAfter), ca.Cert.Subject, day(ca.Cert.NotAfter))
	}

	key, serial, skid, err := freshKey()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.CommonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		// ECDSA keys only sign; KeyEncipherment is an RSA usage.
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  eku,
		DNSNames:     dnsNames,
		IPAddresses:  ips,
		SubjectKeyId: skid,
		// AuthorityKeyId is copied from the CA's SubjectKeyId by
		// x509.CreateCertificate.
	}
	kp, err := sign(tmpl, ca.Cert, key, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return kp, nil
}

// CreateCA makes a CA and writes it to dir/ca.crt and dir/ca.key; it is
// `etcdvisor pki ca`.
func CreateCA(dir, commonName string, validity time.Duration, force bool) (ca *KeyPair, certPath, keyPath string, err error) {
	ca, err = NewCA(commonName, validity)
	if err != nil {
		return nil, "", "", err
	}
	certPath, keyPath, err = WritePair(dir, "ca", ca, force)
	if err != nil {
		return nil, "", "", err
	}
	return ca, certPath, keyPath, nil
}

// IssueFiles loads the CA in caDir (ca.crt and ca.key), issues req with it
// and writes outDir/name.crt and outDir/name.key; it is `etcdvisor pki
// issue`.
func IssueFiles(caDir, outDir, name string, req Request, force bool) (kp *KeyPair, certPath, keyPath string, err error) {
	ca, err := LoadCA(filepath.Join(caDir, "ca.crt"), filepath.Join(caDir, "ca.key"))
	if err != nil {
		return nil, "", "", err
	}
	kp, err = Issue(ca, req)
	if err != nil {
		return nil, "", "", err
	}
	certPath, keyPath, err = WritePair(outDir, name, kp, force)
	if err != nil {
		return nil, "", "", err
	}
	return kp, certPath, keyPath, nil
}

// sign creates the certificate and returns it parsed and PEM-encoded with
// its key.
func sign(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer crypto.Signer) (*KeyPair, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the new certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return &KeyPair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// freshKey makes what every new certificate needs: an ECDSA P-256 key, a
// random serial, and the key's subject key ID.
func freshKey() (*ecdsa.PrivateKey, *big.Int, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	skid, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, nil, nil, err
	}
	return key, serial, skid, nil
}

func newSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		// RFC 5280 wants a positive serial; zero comes up once in 2^128.
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// keyID is RFC 7093's method 1: the leftmost 160 bits of the SHA-256 of
// the public key. Set on every certificate, it lets a verifier pick the
// right CA when an old and a new one share a name during a rotation.
func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	k, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(k.Bytes())
	return sum[:20], nil
}

// sans checks and de-duplicates the subject alternative names.
func sans(dnsNames []string, ips []net.IP) ([]string, []net.IP, error) {
	var outDNS []string
	var outIPs []net.IP
	seen := map[string]bool{}
	addIP := func(ip net.IP) {
		if !seen[ip.String()] {
			seen[ip.String()] = true
			outIPs = append(outIPs, ip)
		}
	}
	for _, ip := range ips {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return nil, nil, fmt.Errorf("IP %v is not an IP address", []byte(ip))
		}
		addIP(ip)
	}
	for _, name := range dnsNames {
		name = strings.TrimSpace(name)
		if ip := net.ParseIP(strings.Trim(name, "[]")); ip != nil {
			addIP(ip)
			continue
		}
		if !validDNSName(name) {
			return nil, nil, fmt.Errorf("DNS name %q is not a host name (letters, digits, '-' and '.', optionally starting with '*.')", name)
		}
		name = strings.ToLower(name)
		if !seen[name] {
			seen[name] = true
			outDNS = append(outDNS, name)
		}
	}
	return outDNS, outIPs, nil
}

// validDNSName accepts host names and a leading wildcard label. It turns
// away the usual slips (a URL, a host:port, a space) that would otherwise
// make a certificate that matches nothing.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		if label == "*" && i == 0 {
			continue
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// parseCerts returns every certificate in data, PEM or a single DER one.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d in the file: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) > 0 {
		return certs, nil
	}
	if c, err := x509.ParseCertificate(data); err == nil {
		return []*x509.Certificate{c}, nil
	}
	if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		return nil, errors.New("holds a private key, not a certificate")
	}
	return nil, errors.New(`no certificate in it (expected PEM "CERTIFICATE" blocks)`)
}

// parseKey reads the first private key in data: PKCS#8, or the older
// SEC 1 ("EC PRIVATE KEY") and PKCS#1 ("RSA PRIVATE KEY") forms that
// other tools write.
func parseKey(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#8 key: %w", err)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("unsupported key type %T", k)
			}
			return s, nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse EC key: %w", err)
			}
			return k, nil
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse RSA key: %w", err)
			}
			return k, nil
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted; etcd needs an unencrypted key")
		}
	}
	if bytes.Contains(data, []byte("CERTIFICATE-----")) {
		return nil, errors.New("holds a certificate, not a private key")
	}
	return nil, errors.New(`no private key in it (expected a PEM "PRIVATE KEY" block)`)
}

// samePublicKey compares keys of any type the standard library has; they
// all implement Equal.
func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// day is how dates appear in messages.
func day(t time.Time) string { return t.UTC().Format("2006-01-02") }
