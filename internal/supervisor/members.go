package supervisor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

// probeTimeout bounds one member's health probe; a member slower than
// this is unhealthy as far as its clients are concerned.
const probeTimeout = 3 * time.Second

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
		wg.Go(func() { out.Members[i] = probeMember(ctx, s.lg, tlsCfg, m) })
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

func probeMember(ctx context.Context, lg *zap.Logger, tlsCfg *tls.Config, m api.Member) api.MemberHealth {
	h := api.MemberHealth{Member: m}
	if len(m.ClientURLs) == 0 {
		h.Error = "no client URL yet (a member added but not started)"
		return h
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var cfg *tls.Config
	if tlsCfg != nil && strings.HasPrefix(m.ClientURLs[0], "https://") {
		cfg = tlsCfg
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   m.ClientURLs,
		TLS:         cfg,
		DialTimeout: probeTimeout,
		Context:     ctx,
		Logger:      lg.Named("probe").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
	})
	if err != nil {
		h.Error = err.Error()
		return h
	}
	defer cli.Close()
	start := time.Now()
	resp, err := cli.Status(ctx, m.ClientURLs[0])
	h.TookMs = float64(time.Since(start).Microseconds()) / 1000
	switch {
	case err != nil:
		h.Error = fmt.Sprintf("status from %s: %v", m.ClientURLs[0], err)
	case resp.Leader == 0:
		h.Error = "has no leader"
	case len(resp.Errors) > 0:
		h.Error = strings.Join(resp.Errors, "; ")
	default:
		h.Healthy = true
	}
	if resp != nil {
		h.RaftTerm, h.RaftIndex, h.DBSize, h.Version = resp.RaftTerm, resp.RaftIndex, resp.DbSize, resp.Version
	}
	return h
}
