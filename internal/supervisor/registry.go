package supervisor

import (
	"context"
	"fmt"
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

// registryNow reads the registry through the in-process client, waiting at
// most limit. Such a read is a function call into the member: while a
// commit hangs in fsync it waits on the backend's lock, and no context
// reaches it there. The watch must go on judging (and exit on a stall)
// meanwhile, so it gives up, and answers with the last read that did
// finish if that is at most registryStale old: on a slow disk, which is
// when the fence and the leader move ask, a read a few seconds old is
// better than none. The read that gave up finishes on its own, or never.
func (s *Supervisor) registryNow(limit time.Duration) (map[string]cluster.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	got := make(chan map[string]cluster.Record, 1)
	errc := make(chan error, 1)
	go func() {
		defer cancel()
		recs, err := cluster.List(ctx, s.member.Client())
		if err != nil {
			errc <- err
			return
		}
		s.regMu.Lock()
		s.regLast, s.regAt = recs, time.Now()
		s.regMu.Unlock()
		got <- recs
	}()
	var err error
	select {
	case recs := <-got:
		return recs, nil
	case err = <-errc:
	case <-time.After(limit):
		err = fmt.Errorf("read registry: no answer within %s (the member's backend is busy)", limit)
	}
	if recs := s.registryLast(); recs != nil {
		return recs, nil
	}
	return nil, err
}

// registryRecent is the registry as a critical member should read it:
// the last read that finished (the loop reads it every second), and a
// read now, bounded by limit, only when there is none. A critical
// member's backend is likely slow, and a read would hold up whatever
// waits on the answer: the fence, a leadership move, the requests the
// move holds.
func (s *Supervisor) registryRecent(limit time.Duration) map[string]cluster.Record {
	if recs := s.registryLast(); recs != nil {
		return recs
	}
	recs, _ := s.registryNow(limit)
	return recs
}

// registryLast is the last registry read that finished, if it is at most
// registryStale old; nil otherwise.
func (s *Supervisor) registryLast() map[string]cluster.Record {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.regLast != nil && time.Since(s.regAt) <= registryStale {
		return s.regLast
	}
	return nil
}

// registryStale is how old a registry read may be and still stand in for
// one that does not finish in time.
const registryStale = 10 * time.Second
