package supervisor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
)

// members lists the cluster and probes every member over its client URL,
// the way kube-apiserver reaches it, all at once.
func (s *Supervisor) members(ctx context.Context) (api.MemberList, error) {
	st := s.status(ctx)
	if st.Error != "" {
		return api.MemberList{}, errors.New(st.Error)
	}
	tlsCfg, err := s.clientTLS()
	if err != nil {
		return api.MemberList{}, err
	}
	out := api.MemberList{Members: make([]api.MemberHealth, len(st.Members))}
	var wg sync.WaitGroup
	for i, m := range st.Members {
		wg.Go(func() { out.Members[i] = cluster.ProbeMember(ctx, s.lg, tlsCfg, m) })
	}
	wg.Wait()
	return out, nil
}

// clientTLS is how etcdvisor dials other members: with this member's
// client certificate pair (etcd's server certificates carry client-auth
// too, as etcd's own gateway needs) and trusted CA. nil for plain http.
func (s *Supervisor) clientTLS() (*tls.Config, error) {
	t := s.cfg.Etcd.ClientTLS
	if !t.Enabled() {
		return nil, nil
	}
	info := transport.TLSInfo{CertFile: t.CertFile, KeyFile: t.KeyFile, TrustedCAFile: t.TrustedCAFile}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd.client-transport-security: %w", err)
	}
	return cfg, nil
}
