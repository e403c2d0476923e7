package supervisor

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/pki"
)

// tlsTransport is one configured TLS transport, named as metrics and errors
// name it.
type tlsTransport struct {
	role  string // "client" or "peer"
	path  string // config path
	tls   config.TLS
	hosts []string // hosts the certificate must cover
}

func (s *Supervisor) transports() []tlsTransport {
	e := s.cfg.Etcd
	var out []tlsTransport
	if e.ClientTLS.Enabled() {
		out = append(out, tlsTransport{"client", "etcd.client-transport-security", e.ClientTLS, pki.HostsFromURLs(e.AdvertiseClientURLs)})
	}
	if e.PeerTLS.Enabled() {
		out = append(out, tlsTransport{"peer", "etcd.peer-transport-security", e.PeerTLS, pki.HostsFromURLs(e.InitialAdvertisePeerURLs)})
	}
	return out
}

// preflightTLS checks every configured certificate before etcd starts:
// files readable, key matching, chain to the CA, validity, hosts covered.
func (s *Supervisor) preflightTLS() error {
	for _, t := range s.transports() {
		warnings, err := pki.Check{
			Role:     t.role,
			CertFile: t.tls.CertFile,
			KeyFile:  t.tls.KeyFile,
			CAFile:   t.tls.TrustedCAFile,
			Hosts:    t.hosts,
			Now:      time.Now(),
		}.Run()
		for _, w := range warnings {
			s.lg.Warn("certificate check", zap.String("transport", t.path), zap.String("warning", w))
		}
		if err != nil {
			return fmt.Errorf("%s: %w", t.path, err)
		}
	}
	s.recordCertExpiry()
	return nil
}

// recordCertExpiry exports each certificate's expiry, so an alert fires
// weeks before a member can no longer talk to its peers.
func (s *Supervisor) recordCertExpiry() {
	for _, t := range s.transports() {
		for role, f := range map[string]string{t.role: t.tls.CertFile, t.role + "-ca": t.tls.TrustedCAFile} {
			if f == "" {
				continue
			}
			notAfter, err := pki.ExpiresAt(f)
			if err != nil {
				s.warnOnce("cert:"+f, "cannot read certificate expiry", zap.String("file", f), zap.Error(err))
				continue
			}
			s.metrics.SetCertExpiry(role, f, notAfter)
		}
	}
}
