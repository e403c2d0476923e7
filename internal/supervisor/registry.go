package supervisor

import (
	"context"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
	"github.com/etcdvisor/etcdvisor/internal/version"
)

// publish hands the registry this member's latest record; the registry
// writes it when it changed or its refresh is due.
func (s *Supervisor) publish(st api.Status) {
	if s.reg == nil || st.Error != "" {
		return
	}
	rec := cluster.Record{
		Name:             s.cfg.Etcd.Name,
		MemberID:         st.MemberID,
		PeerURLs:         s.cfg.Etcd.InitialAdvertisePeerURLs,
		ClientURLs:       s.cfg.Etcd.AdvertiseClientURLs,
		EtcdvisorVersion: version.Version,
		EtcdVersion:      st.EtcdVersion,
	}
	if h := st.Health; h != nil {
		rec.Health = h.State.String()
		rec.Reasons = reasonTexts(h.Reasons)
	}
	if l := st.LastSnapshot; l != nil {
		rec.LastSnapshot = l.CreatedAt
	}
	s.reg.Set(rec)
}

// withRegistry adds to each member what its etcdvisor publishes: whether
// one is alive there, and the health it reports of itself.
func (s *Supervisor) withRegistry(ctx context.Context, list api.MemberList) api.MemberList {
	s.mu.Lock()
	for i, m := range list.Members {
		list.Members[i].UnreachableSeconds = s.unreachableFor[m.Name].Seconds()
	}
	s.mu.Unlock()
	recs, err := cluster.List(ctx, s.member.Client())
	if err != nil {
		return list
	}
	for i, m := range list.Members {
		rec, ok := recs[m.Name]
		if !ok {
			continue
		}
		list.Members[i].Etcdvisor = &api.EtcdvisorView{
			Version:   rec.EtcdvisorVersion,
			Health:    rec.Health,
			Reasons:   rec.Reasons,
			UpdatedAt: rec.UpdatedAt,
			Age:       time.Since(rec.UpdatedAt).Round(time.Second).String(),
		}
	}
	return list
}
