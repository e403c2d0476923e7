package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

// ProbeTimeout bounds one member's health probe; a member slower than this
// is unhealthy as far as its clients are concerned.
const ProbeTimeout = 3 * time.Second

// View is the cluster at one moment: the member list, read with quorum,
// and how each member answers over its client URL from here.
type View struct {
	Members  []api.MemberHealth
	LeaderID uint64 // the leader most members report; 0: none
}

// Observe lists the members through cli (a linearizable call: without
// quorum it fails, and nothing should proceed) and probes each at once.
func Observe(ctx context.Context, cli *clientv3.Client, tlsCfg *tls.Config, lg *zap.Logger) (View, error) {
	lctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	resp, err := cli.MemberList(lctx)
	cancel()
	if err != nil {
		return View{}, fmt.Errorf("list members (this needs a quorum): %w", err)
	}
	v := View{Members: make([]api.MemberHealth, len(resp.Members))}
	var wg sync.WaitGroup
	for i, m := range resp.Members {
		mb := api.Member{ID: HexID(m.ID), Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner}
		wg.Go(func() { v.Members[i] = ProbeMember(ctx, lg, tlsCfg, mb) })
	}
	wg.Wait()
	// The leader most healthy members name: a member cut off may still
	// name an old one.
	votes := map[string]int{}
	best := ""
	for _, m := range v.Members {
		if m.Healthy {
			votes[m.LeaderID]++
			if votes[m.LeaderID] > votes[best] {
				best = m.LeaderID
			}
		}
	}
	if best != "" {
		v.LeaderID, _ = ParseID(best)
	}
	for i := range v.Members {
		v.Members[i].IsLeader = best != "" && v.Members[i].ID == best
	}
	return v, nil
}

// Voters are the voting members.
func (v View) Voters() []api.MemberHealth {
	var out []api.MemberHealth
	for _, m := range v.Members {
		if !m.IsLearner {
			out = append(out, m)
		}
	}
	return out
}

// Find returns the member with the given name or hex ID.
func (v View) Find(nameOrID string) (api.MemberHealth, bool) {
	for _, m := range v.Members {
		if m.Name == nameOrID || m.ID == nameOrID {
			return m, true
		}
	}
	return api.MemberHealth{}, false
}

// Quorum is the number of voters a cluster of n voters needs.
func Quorum(n int) int { return n/2 + 1 }

// HexID is etcd's spelling of a member ID.
func HexID(id uint64) string { return strconv.FormatUint(id, 16) }

// ParseID reads a hex member ID.
func ParseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("member ID %q is not a hex number", s)
	}
	return id, nil
}

// ProbeMember asks one member for its status over its first client URL,
// the way kube-apiserver reaches it.
func ProbeMember(ctx context.Context, lg *zap.Logger, tlsCfg *tls.Config, m api.Member) api.MemberHealth {
	h := api.MemberHealth{Member: m}
	if len(m.ClientURLs) == 0 {
		h.Error = "no client URL yet (a member added but not started)"
		return h
	}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	// A member whose port refuses connections is down, and says so at
	// once; clientv3 would instead wait out the whole timeout for a
	// connection that cannot come (its calls wait for a ready connection
	// and Status is retried), and every change that observes a cluster
	// with a dead member would pay that wait.
	if err := dialable(ctx, m.ClientURLs[0]); err != nil {
		h.Error = err.Error()
		return h
	}
	cli, err := MemberClient(ctx, lg, tlsCfg, m)
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
		if resp.Leader != 0 {
			h.LeaderID = HexID(resp.Leader)
		}
	}
	return h
}

// MemberClient is a client of m alone, over its first client URL, with
// tlsCfg when that URL is https. It lives as long as ctx.
func MemberClient(ctx context.Context, lg *zap.Logger, tlsCfg *tls.Config, m api.Member) (*clientv3.Client, error) {
	if len(m.ClientURLs) == 0 {
		return nil, fmt.Errorf("member %s has no client URL yet", m.Name)
	}
	var cfg *tls.Config
	if tlsCfg != nil && strings.HasPrefix(m.ClientURLs[0], "https://") {
		cfg = tlsCfg
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   m.ClientURLs[:1],
		TLS:         cfg,
		DialTimeout: ProbeTimeout,
		Context:     ctx,
		Logger:      lg.Named("probe").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
	})
}

// dialable opens and closes a TCP connection to a client URL's address.
func dialable(ctx context.Context, clientURL string) error {
	u, err := url.Parse(clientURL)
	if err != nil {
		return fmt.Errorf("client URL %q: %w", clientURL, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return fmt.Errorf("status from %s: %w", clientURL, err)
	}
	return conn.Close()
}
