package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Check is the startup preflight for one configured transport: it finds
// the certificate problems etcd would otherwise report as a failed
// handshake on some other member, minutes later.
type Check struct {
	// Role is "client" (etcd's client-transport-security) or "peer"
	// (peer-transport-security); it names the transport in messages and
	// decides whether a readable key is a warning or an error.
	Role     string
	CertFile string
	KeyFile  string
	// CAFile is the transport's trusted-ca-file; empty skips the chain.
	CAFile string
	// Hosts are the host names or IPs this member listens or advertises
	// on; the certificate must cover each (an IP SAN for an IP, a DNS SAN
	// otherwise). HostsFromURLs extracts them from URLs.
	Hosts []string
	// Now is when the certificate must be valid; zero means time.Now().
	Now time.Time
}

// Run checks, in order: that the cert and key files exist and are
// readable; that they parse; that they match each other; that the cert
// chains to CAFile for server auth (and, for a peer, client auth too, since
// peers dial each other); that it is within its validity period; that it
// covers every host in Hosts; and that the key file is not readable or
// writable by group or others, a warning for role "client" and an error
// for role "peer" (the peer key lets anyone join the cluster).
//
// Run returns all warnings. When the files are missing, unreadable,
// unparsable or do not match, it stops there, since nothing after can be
// checked; otherwise it reports every problem it finds at once, joined
// with errors.Join, so that an operator fixing certificates on a host that
// is down does not discover them one restart at a time. Every error names
// the file and the reason.
func (c Check) Run() (warnings []string, err error) {
	if c.Role != "client" && c.Role != "peer" {
		return nil, fmt.Errorf("pki check: role %q: expected client or peer", c.Role)
	}
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}

	certPEM, certErr := c.read("cert", c.CertFile)
	keyPEM, keyErr := c.read("key", c.KeyFile)
	if err := errors.Join(certErr, keyErr); err != nil {
		return nil, err
	}
	certs, certErr := parseCerts(certPEM)
	if certErr != nil {
		certErr = fmt.Errorf("%s cert %s: %w", c.Role, c.CertFile, certErr)
	}
	key, keyErr := parseKey(keyPEM)
	if keyErr != nil {
		keyErr = fmt.Errorf("%s key %s: %w", c.Role, c.KeyFile, keyErr)
	}
	if err := errors.Join(certErr, keyErr); err != nil {
		return nil, err
	}
	leaf := certs[0]
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		if !samePublicKey(key.Public(), leaf.PublicKey) {
			return nil, fmt.Errorf("%s key %s does not match cert %s", c.Role, c.KeyFile, c.CertFile)
		}
		return nil, fmt.Errorf("%s cert %s and key %s: %w", c.Role, c.CertFile, c.KeyFile, err)
	}

	var errs []error
	if c.CAFile != "" {
		errs = append(errs, c.chain(leaf, certs[1:], now)...)
	}
	if !hasUsage(leaf, x509.ExtKeyUsageClientAuth) {
		msg := fmt.Sprintf("%s cert %s: has no client auth usage (it has %s)", c.Role, c.CertFile, strings.Join(usages(leaf), ", "))
		if c.Role == "peer" {
			errs = append(errs, errors.New(msg+"; members dial each other with it, so the others will refuse this one; "+c.reissue(leaf, nil)))
		} else {
			warnings = append(warnings, msg+"; etcd's grpc-gateway dials etcd with it and is refused when client-cert-auth is on")
		}
	}
	switch {
	case now.After(leaf.NotAfter):
		errs = append(errs, fmt.Errorf("%s cert %s: expired %s (%s); %s",
			c.Role, c.CertFile, day(leaf.NotAfter), ago(now, leaf.NotAfter), c.reissue(leaf, nil)))
	case now.Before(leaf.NotBefore):
		errs = append(errs, fmt.Errorf("%s cert %s: not valid until %s (in %s); is this host's clock right?",
			c.Role, c.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339), roughly(leaf.NotBefore.Sub(now))))
	}
	if err := c.covers(leaf); err != nil {
		errs = append(errs, err)
	}
	w, err := c.keyMode()
	if w != "" {
		warnings = append(warnings, w)
	}
	if err != nil {
		errs = append(errs, err)
	}
	return warnings, errors.Join(errs...)
}

// read returns the file's contents, or an error that says in plain words
// why etcd could not use it.
func (c Check) read(what, path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%s %s: no file configured", c.Role, what)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s %s %s: does not exist", c.Role, what, path)
	case err != nil:
		return nil, fmt.Errorf("%s %s %s: cannot read it: %w", c.Role, what, path, unwrapPath(err))
	case fi.IsDir():
		return nil, fmt.Errorf("%s %s %s: is a directory, not a file", c.Role, what, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s %s %s: cannot read it: %w", c.Role, what, path, unwrapPath(err))
	}
	return data, nil
}

// chain verifies leaf against CAFile for server auth, the usage etcd's
// listeners need on both transports.
//
// x509.Verify stops at the first certificate outside its validity period,
// before it looks at signatures or usages. Run reports the leaf's own
// period separately, so when Verify fails for any reason but usage, chain
// works out from the signatures alone whether the CA signed the leaf, and
// then whether a CA in the chain is what has expired.
func (c Check) chain(leaf *x509.Certificate, inters []*x509.Certificate, now time.Time) []error {
	data, err := c.read("trusted CA", c.CAFile)
	if err != nil {
		return []error{err}
	}
	roots, err := parseCerts(data)
	if err != nil {
		return []error{fmt.Errorf("%s trusted CA %s: %w", c.Role, c.CAFile, err)}
	}
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	for _, i := range inters {
		opts.Intermediates.AddCert(i)
	}
	_, verr := leaf.Verify(opts)
	if verr == nil {
		return nil
	}
	notServer := fmt.Errorf("%s cert %s: not usable for server auth (it has %s); etcd serves with it; %s",
		c.Role, c.CertFile, strings.Join(usages(leaf), ", "), c.reissue(leaf, nil))
	if inv, ok := errors.AsType[x509.CertificateInvalidError](verr); ok && inv.Reason == x509.IncompatibleUsage {
		return []error{notServer}
	}
	path := signedBy(leaf, inters, roots, 4)
	if path == nil {
		return []error{fmt.Errorf("%s cert %s: not signed by the CA in %s (issuer %q)", c.Role, c.CertFile, c.CAFile, leaf.Issuer.String())}
	}
	var errs []error
	for _, ca := range path[1:] {
		switch {
		case now.After(ca.NotAfter):
			errs = append(errs, fmt.Errorf("%s trusted CA %s: %q expired %s (%s); every certificate it signed is refused until the cluster has a new CA",
				c.Role, c.CAFile, ca.Subject.String(), day(ca.NotAfter), ago(now, ca.NotAfter)))
		case now.Before(ca.NotBefore):
			errs = append(errs, fmt.Errorf("%s trusted CA %s: %q not valid until %s; is this host's clock right?",
				c.Role, c.CAFile, ca.Subject.String(), ca.NotBefore.UTC().Format(time.RFC3339)))
		}
	}
	if !hasUsage(leaf, x509.ExtKeyUsageServerAuth) {
		errs = append(errs, notServer)
	}
	inPeriod := !now.Before(leaf.NotBefore) && !now.After(leaf.NotAfter)
	if len(errs) == 0 && inPeriod {
		// Not a period, signature or usage problem: say what Verify said.
		errs = append(errs, fmt.Errorf("%s cert %s: does not verify against the CA in %s: %w", c.Role, c.CertFile, c.CAFile, verr))
	}
	return errs
}

// signedBy returns a chain from c to one of roots, through at most depth
// intermediates, by signature alone, ignoring validity periods.
func signedBy(c *x509.Certificate, inters, roots []*x509.Certificate, depth int) []*x509.Certificate {
	for _, r := range roots {
		if c.Equal(r) || c.CheckSignatureFrom(r) == nil {
			return []*x509.Certificate{c, r}
		}
	}
	if depth == 0 {
		return nil
	}
	for _, in := range inters {
		if c.Equal(in) || c.CheckSignatureFrom(in) != nil {
			continue
		}
		if rest := signedBy(in, inters, roots, depth-1); rest != nil {
			return append([]*x509.Certificate{c}, rest...)
		}
	}
	return nil
}

// covers reports the hosts the certificate does not cover, with what it
// has instead.
func (c Check) covers(leaf *x509.Certificate) error {
	var missing []string
	for _, h := range c.Hosts {
		h = strings.Trim(strings.TrimSpace(h), "[]")
		if h == "" {
			continue
		}
		// VerifyHostname is what a TLS client runs: an IP must be an IP
		// SAN, a name a DNS SAN (wildcards allowed); the common name is
		// never consulted.
		if leaf.VerifyHostname(h) != nil {
			missing = append(missing, h)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	ips := make([]string, len(leaf.IPAddresses))
	for i, ip := range leaf.IPAddresses {
		ips[i] = ip.String()
	}
	return fmt.Errorf("%s cert %s: does not cover %s (it has DNS [%s] IP [%s]); %s",
		c.Role, c.CertFile, strings.Join(missing, ", "), strings.Join(leaf.DNSNames, " "), strings.Join(ips, " "),
		c.reissue(leaf, missing))
}

// keyMode checks that only the key's owner can read or write it.
func (c Check) keyMode() (warning string, err error) {
	fi, err := os.Stat(c.KeyFile)
	if err != nil {
		return "", fmt.Errorf("%s key %s: %w", c.Role, c.KeyFile, unwrapPath(err))
	}
	mode := fi.Mode().Perm()
	if mode&0o066 == 0 {
		return "", nil
	}
	msg := fmt.Sprintf("%s key %s: mode %#o lets group or others read or write it; chmod 600 %s and chown it to the user etcdvisor runs as",
		c.Role, c.KeyFile, mode, c.KeyFile)
	if c.Role == "peer" {
		return "", errors.New(msg + " (the peer key lets anyone join the cluster)")
	}
	return msg + " (with it anyone can pose as this member to etcd's clients)", nil
}

// reissue tells the operator the command that makes a replacement: the
// same kind and name, the SANs it has plus any it lacks.
func (c Check) reissue(leaf *x509.Certificate, extraHosts []string) string {
	kind := Server
	if c.Role == "peer" {
		kind = Peer
	}
	name := strings.TrimSuffix(filepath.Base(c.CertFile), filepath.Ext(c.CertFile))
	args := []string{"etcdvisor pki issue", string(kind), name, "--ca CA_DIR"}
	for _, d := range leaf.DNSNames {
		args = append(args, "--host "+d)
	}
	for _, ip := range leaf.IPAddresses {
		args = append(args, "--ip "+ip.String())
	}
	for _, h := range extraHosts {
		if net.ParseIP(h) != nil {
			args = append(args, "--ip "+h)
		} else {
			args = append(args, "--host "+h)
		}
	}
	return fmt.Sprintf("issue a new one with: %s (where CA_DIR holds ca.crt and ca.key) and copy it to %s",
		strings.Join(args, " "), filepath.Dir(c.CertFile))
}

// HostsFromURLs returns the hosts of urls that a certificate must cover,
// in order, without duplicates. Unspecified addresses (0.0.0.0, ::) are
// left out: they are where a member listens, not a name it is reached by.
// URLs that do not parse are skipped; config validation reports them.
func HostsFromURLs(urls []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		h := u.Hostname()
		if h == "" || seen[h] {
			continue
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
			continue
		}
		seen[h] = true
		out = append(out, h)
	}
	return out
}

func hasUsage(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	// No extended key usage at all means any usage, to Go and to etcd.
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == want || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// ago says how long before now t was, in whole days.
func ago(now, t time.Time) string {
	switch d := daysBetween(t, now); d {
	case 0:
		return "less than a day ago"
	case 1:
		return "1 day ago"
	default:
		return fmt.Sprintf("%d days ago", d)
	}
}

// roughly says how long d is in the largest unit that fits twice.
func roughly(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.0f days", d.Hours()/24)
	case d >= 2*time.Hour:
		return fmt.Sprintf("%.0f hours", d.Hours())
	case d >= 2*time.Minute:
		return fmt.Sprintf("%.0f minutes", d.Minutes())
	}
	return d.Round(time.Second).String()
}

// unwrapPath drops the *fs.PathError wrapper whose op and path the
// message already gives.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}
