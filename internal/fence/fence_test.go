package fence

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdvisor/etcdvisor/e2e/faults"
	"github.com/etcdvisor/etcdvisor/internal/raftpeer"
	"github.com/etcdvisor/etcdvisor/internal/testetcd"
)

// startEtcd runs a one-member etcd with the gate installed, as etcdrun
// does, and returns its client URL.
func startEtcd(t *testing.T, g *Gate) string {
	t.Helper()
	return testetcd.Start(t, "http", func(cfg *embed.Config) {
		cfg.GRPCAdditionalServerOptions = g.ServerOptions()
	}).ClientURL
}

func newClient(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestClosedGateRefusesClientRequestsButNotMaintenance(t *testing.T) {
	g := New("m1")
	cli := newClient(t, startEtcd(t, g))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put through an open gate: %v", err)
	}

	g.Close("fsync probe p99 200ms")
	if closed, why := g.Closed(); !closed || why != "fsync probe p99 200ms" {
		t.Fatalf("Closed() = %v, %q", closed, why)
	}
	// With no other endpoint, clientv3 resends the put to this one until
	// its retries run out, and then fails it with the refusal.
	_, err := cli.Put(ctx, "k", "v2")
	member, why, ok := Info(err)
	if status.Code(err) != codes.Unavailable || !ok || member != "m1" || !strings.Contains(why, "fsync probe p99 200ms") {
		t.Fatalf("put through a closed gate: %v (info %q %q %v), want Unavailable naming the member and reason", err, member, why, ok)
	}
	if n := g.Refused(); n < 2 {
		t.Errorf("the gate refused %d requests; clientv3 should have resent the put", n)
	}
	// Operators and peers still see the member.
	if _, err := cli.Status(ctx, cli.Endpoints()[0]); err != nil {
		t.Errorf("status through a closed gate: %v", err)
	}
	if _, err := cli.MemberList(ctx); err != nil {
		t.Errorf("member list through a closed gate: %v", err)
	}

	g.Open()
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatalf("get after reopening: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Errorf("got %v: the refused put must not have been applied", resp.Kvs)
	}
}

// A write refused by a closed gate is resent by clientv3 to its next
// endpoint instead of failing. The second endpoint here is a separate
// one-member cluster, so where each put landed can be read back.
func TestClientsResendRefusedWritesToAnotherEndpoint(t *testing.T) {
	g := New("m1")
	fenced := startEtcd(t, g)
	other := testetcd.Start(t, "http", nil).ClientURL
	g.Close("stalled")
	cli := newClient(t, fenced, other)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const puts = 20
	for i := range puts {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%02d", i), "v"); err != nil {
			t.Fatalf("put %d with a fenced and an open endpoint: %v", i, err)
		}
	}
	if g.Refused() == 0 {
		t.Fatalf("no put went to the fenced endpoint first; the test proves nothing")
	}
	g.Open()
	for url, want := range map[string]int64{other: puts, fenced: 0} {
		resp, err := newClient(t, url).Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != want {
			t.Errorf("%s holds %d of the puts, want %d", url, resp.Count, want)
		}
	}
	t.Logf("%d puts, %d refused by the fenced member and resent", puts, g.Refused())
}

// Raft drops new proposals while a leadership transfer runs. A write
// dropped so is asked again on the member until raft takes it, instead of
// failing with "raft proposal dropped", which clientv3 does not resend.
// The transfers here go to a stopped member, so each holds the leader in
// transfer for an election timeout before raft gives up on it.
func TestAProposalDroppedDuringATransferIsAskedAgain(t *testing.T) {
	g := New("m1")
	ms := testetcd.StartCluster(t, 3, func(i int, cfg *embed.Config) {
		if i == 0 {
			cfg.GRPCAdditionalServerOptions = g.ServerOptions()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli := newClient(t, ms[0].ClientURL)
	makeLead(ctx, t, ms, 0)
	m3 := uint64(ms[2].Etcd.Server.MemberID())
	testetcd.Close(ms[2].Etcd)

	puts := 0
	for attempt := 0; g.Resent() == 0 && attempt < 20; attempt++ {
		moved := transferInBackground(ctx, cli, m3)
		for i := 0; i < 50 && g.Resent() == 0; i++ {
			if _, err := cli.Put(ctx, "k", fmt.Sprint(puts)); err != nil {
				t.Fatalf("put %d while a transfer to a stopped member runs: %v", puts, err)
			}
			puts++
		}
		if err := <-moved; err == nil {
			t.Fatal("leadership moved to a stopped member")
		}
	}
	if g.Resent() == 0 {
		t.Fatalf("no put was dropped in %d puts during transfers; the test proves nothing", puts)
	}
	t.Logf("%d puts, all taken; %d resends of dropped ones", puts, g.Resent())
}

// transferInBackground asks cli's member, the leader, to hand leadership
// to id, and delivers MoveLeader's answer. A transfer to a stopped member
// holds the leader in transfer for an election timeout, and MoveLeader
// then fails once its 3s are up.
func transferInBackground(ctx context.Context, cli *clientv3.Client, id uint64) <-chan error {
	moved := make(chan error, 1)
	go func() {
		mctx, mcancel := context.WithTimeout(ctx, 3*time.Second)
		defer mcancel()
		_, err := cli.MoveLeader(mctx, id)
		moved <- err
	}()
	return moved
}

// putInBackground puts key and sends the put's error. Its deadline is
// past etcd's own request timeout, so an answer before it is the gate's.
func putInBackground(ctx context.Context, cli *clientv3.Client, key string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
		defer pcancel()
		_, err := cli.Put(pctx, key, "v")
		errc <- err
	}()
	return errc
}

// makeLead hands leadership to ms[i], asking the member that leads now.
func makeLead(ctx context.Context, t *testing.T, ms []testetcd.Member, i int) {
	t.Helper()
	want := uint64(ms[i].Etcd.Server.MemberID())
	lead := uint64(ms[i].Etcd.Server.Leader())
	if lead == want {
		return
	}
	for _, m := range ms {
		if uint64(m.Etcd.Server.MemberID()) == lead {
			if _, err := newClient(t, m.ClientURL).MoveLeader(ctx, want); err != nil {
				t.Fatalf("make %s lead: %v", ms[i].Etcd.Config().Name, err)
			}
		}
	}
}

func TestOnlyClientServicesAreFenced(t *testing.T) {
	g := New("m1")
	g.Close("stalled")
	for method, fenced := range map[string]bool{
		"/etcdserverpb.KV/Put":                 true,
		"/etcdserverpb.KV/Range":               true,
		"/etcdserverpb.Watch/Watch":            true,
		"/etcdserverpb.Lease/LeaseGrant":       true,
		"/v3lockpb.Lock/Lock":                  true,
		"/v3electionpb.Election/Campaign":      true,
		"/etcdserverpb.Maintenance/Status":     false,
		"/etcdserverpb.Maintenance/MoveLeader": false,
		"/etcdserverpb.Cluster/MemberList":     false,
		"/grpc.health.v1.Health/Check":         false,
	} {
		if got := g.check(method) != nil; got != fenced {
			t.Errorf("%s: fenced %v, want %v", method, got, fenced)
		}
	}
	g.Open()
	if err := g.check("/etcdserverpb.KV/Put"); err != nil {
		t.Errorf("open gate refused a put: %v", err)
	}
}

// A request that arrives while this member hands its leadership away waits
// for the handover, and then meets the gate as it is: refused (never
// proposed) when the gate closed meanwhile, served when it did not.
func TestRequestsWaitForALeadershipMoveAndThenMeetTheGate(t *testing.T) {
	g := New("m1")
	cli := newClient(t, startEtcd(t, g))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	put := func(key string) chan error {
		errc := make(chan error, 1)
		go func() {
			_, err := cli.Put(ctx, key, "v")
			errc <- err
		}()
		return errc
	}
	waitHeld := func(n uint64) {
		t.Helper()
		for g.Held() < n {
			select {
			case <-ctx.Done():
				t.Fatalf("no request held: %d held, want %d", g.Held(), n)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}

	// A move that ends with the gate closed: the held put is refused.
	end := g.BeginMove()
	refused := put("held-then-refused")
	waitHeld(1)
	select {
	case err := <-refused:
		t.Fatalf("put returned during the move: %v", err)
	default:
	}
	g.Close("fsync probe p99 200ms")
	end()
	end() // a second call does nothing
	if _, _, ok := Info(<-refused); !ok {
		t.Fatal("put held during a move that ended with the gate closed: want the fence's refusal")
	}
	g.Open()
	if resp, err := cli.Get(ctx, "held-then-refused"); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("the refused put must never have been applied: get %v, %v", resp, err)
	}

	// A move that fails, the gate open: the held put goes ahead.
	end = g.BeginMove()
	served := put("held-then-served")
	waitHeld(2)
	end()
	if err := <-served; err != nil {
		t.Fatalf("put held during a move that failed: %v", err)
	}
	if resp, err := cli.Get(ctx, "held-then-served"); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the served put must be applied: get %v, %v", resp, err)
	}
	// Maintenance is never held: operators must reach a member mid-move.
	end = g.BeginMove()
	defer end()
	if _, err := cli.Status(ctx, cli.Endpoints()[0]); err != nil {
		t.Fatalf("status during a move: %v", err)
	}
}

// A leader in the middle of a transfer drops the writes its followers
// forward, and tells no one. Here m1 (a follower, with the gate) forwards
// a put while the leader runs a transfer to a stopped member; once a later
// transfer to m1 starts a new term, the gate gives the lost put up with
// etcd's own "possibly due to previous leader failure", long before the
// client's deadline, and the put was never applied.
func TestAWriteLostToALeaderChangeIsGivenUp(t *testing.T) {
	g := New("m1")
	ms := testetcd.StartCluster(t, 3, func(i int, cfg *embed.Config) {
		if i == 1 {
			cfg.GRPCAdditionalServerOptions = g.ServerOptions()
		}
	})
	g.Attach(ms[1].Etcd.Server, 200*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leaderCli := newClient(t, ms[0].ClientURL)
	m0, m1, m2 := uint64(ms[0].Etcd.Server.MemberID()), uint64(ms[1].Etcd.Server.MemberID()), uint64(ms[2].Etcd.Server.MemberID())
	makeLead(ctx, t, ms, 0)
	testetcd.Close(ms[2].Etcd)
	followerCli := newClient(t, ms[1].ClientURL)

	for attempt := 0; attempt < 20; attempt++ {
		// A transfer to the stopped m2 holds m0 in transfer until raft
		// gives up on it an election timeout later; a put goes through
		// m1 right behind it.
		moved := transferInBackground(ctx, leaderCli, m2)
		key := fmt.Sprintf("lost-%d", attempt)
		putc := putInBackground(ctx, followerCli, key)
		<-moved
		select {
		case err := <-putc:
			if err != nil {
				t.Fatalf("put %s: %v", key, err)
			}
			continue // it reached m0 before or after the transfer: try again
		default:
		}
		// The put is pending. Hand leadership to m1: a new term begins.
		if _, err := leaderCli.MoveLeader(ctx, m1); err != nil {
			t.Fatalf("move leadership to m1: %v", err)
		}
		err := <-putc
		if err == nil {
			t.Logf("attempt %d: the pending put was taken after all", attempt)
			leaderCli = followerCli // m1 leads now; swap roles back
			if _, err := leaderCli.MoveLeader(ctx, m0); err != nil {
				t.Fatalf("move leadership back to m0: %v", err)
			}
			leaderCli = newClient(t, ms[0].ClientURL)
			continue
		}
		if err.Error() != rpctypes.ErrTimeoutDueToLeaderFail.Error() || g.GivenUp() != 1 {
			t.Fatalf("lost put %s: %v (given up %d), want the gate to give it up with %q", key, err, g.GivenUp(), rpctypes.ErrTimeoutDueToLeaderFail)
		}
		resp, gerr := followerCli.Get(ctx, key)
		if gerr != nil || len(resp.Kvs) != 0 {
			t.Fatalf("the given-up put %s: get %v, %v; it was dropped, so it must not exist", key, resp, gerr)
		}
		t.Logf("attempt %d: the lost put was given up: %v", attempt, err)
		return
	}
	t.Fatal("no put was lost in 20 transfers; the test proves nothing")
}

// handedOffALeaderOnAHungDisk sets the scene for the tests of writes lost
// with the leadership. m1 leads, with the gate, on a disk whose WAL hangs:
// put a is sent to the followers before m1's fsync hangs, and committed
// by them; put b arrives while it hangs, so m1 never sends it. Leadership
// is then handed to m2 without m1's raft (raftpeer). The disk hangs until
// the test calls unstall (or ends).
func handedOffALeaderOnAHungDisk(t *testing.T, ctx context.Context) (g *Gate, ms []testetcd.Member, a, b <-chan error, unstall func()) {
	t.Helper()
	backing, mnt := t.TempDir(), filepath.Join(t.TempDir(), "m1")
	disk, err := faults.MountSlowFS(backing, mnt)
	if err != nil {
		t.Fatalf("slow disk for m1 (needs root and /dev/fuse): %v", err)
	}
	t.Cleanup(func() {
		if err := disk.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	g = New("m1")
	ms = testetcd.StartCluster(t, 3, func(i int, cfg *embed.Config) {
		if i == 0 {
			cfg.GRPCAdditionalServerOptions = g.ServerOptions()
			cfg.WalDir = filepath.Join(mnt, "wal") // only the WAL: the hang must not reach the backend
			cfg.UnsafeNoFsync = false
		}
	})
	// Cleanups run last first: the disk answers again before the members
	// stop (a hung disk never lets m1 stop), and before it is unmounted.
	t.Cleanup(disk.Unstall)
	m1, m2 := ms[0].Etcd.Server, ms[1].Etcd.Server
	g.Attach(m1, 200*time.Millisecond)
	makeLead(ctx, t, ms, 0)
	cli := newClient(t, ms[0].ClientURL)
	put := func(key string) <-chan error { return putInBackground(ctx, cli, key) }
	// Settle first: a new cluster's leader proposes the cluster version,
	// which would take the hanging fsync's place below; and m1's Term, the
	// term of its last applied entry, is the term a handover must name
	// once m1 has applied an entry of its own.
	if err := <-put("settle"); err != nil {
		t.Fatal(err)
	}
	for m1.ClusterVersion() == nil || pendingProposals(t) > 0 {
		wait(ctx, t, "the cluster version was never set")
	}

	disk.Stall()
	// etcd sends a leader's entries to its followers before it writes
	// them to its own WAL: a is out once that write hangs.
	a = put("a")
	for disk.Stats().Stalled == 0 {
		wait(ctx, t, "m1's WAL fsync never hung")
	}
	b = put("b")
	for pendingProposals(t) < 2 { // a and b: b is in m1's log, unsent
		wait(ctx, t, "put b never reached m1's raft")
	}
	h := raftpeer.Handover{Cluster: uint64(m1.Cluster().ID()), From: uint64(m1.MemberID()), To: uint64(m2.MemberID()), Term: m1.Term()}
	if err := raftpeer.SendTimeoutNow(ctx, nil, ms[1].PeerURL, h); err != nil {
		t.Fatalf("hand leadership to m2: %v", err)
	}
	for m2.Lead() != h.To || ms[2].Etcd.Server.Lead() != h.To {
		wait(ctx, t, "m2 never took over")
	}
	return g, ms, a, b, disk.Unstall
}

// checkLost checks that put b was given up with etcd's own message, that
// the gate gave up givenUp writes in all, and that a was applied and b
// was not.
func checkLost(ctx context.Context, t *testing.T, g *Gate, ms []testetcd.Member, errB error, givenUp uint64) {
	t.Helper()
	if !isGivenUp(errB) || g.GivenUp() != givenUp {
		t.Fatalf("put b: %v (given up %d, want %d), want the gate to give it up with %q", errB, g.GivenUp(), givenUp, rpctypes.ErrTimeoutDueToLeaderFail)
	}
	for key, want := range map[string]int{"a": 1, "b": 0} {
		resp, err := newClient(t, ms[1].ClientURL).Get(ctx, key)
		if err != nil || len(resp.Kvs) != want {
			t.Errorf("get %s: %v, %v; want %d key", key, resp, err, want)
		}
	}
}

// A leader that loses its leadership loses the writes it has not yet
// sent, and etcd tells their clients only at its own request timeout
// (seven seconds by default). Once m1's disk answers again and m1 has
// applied the new term, put a completes and the gate gives b up.
func TestAWriteLostWithTheLeadershipIsGivenUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, ms, a, b, unstall := handedOffALeaderOnAHungDisk(t, ctx)
	unstall()
	if err := <-a; err != nil {
		t.Fatalf("put a was committed before the handover: %v", err)
	}
	checkLost(ctx, t, g, ms, <-b, 1)
}

// After a handover of its own (HandedOver), the member does not wait to
// apply the new term, which on a slow disk comes one or two slow fsyncs
// later: both puts are given up while m1's disk still hangs. a was
// committed all the same: "timed out" leaves the outcome open, truly.
func TestWritesPendingAtAHandoverAreGivenUpWithoutWaitingForTheDisk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, ms, a, b, unstall := handedOffALeaderOnAHungDisk(t, ctx)
	g.HandedOver()
	errA, errB := <-a, <-b
	unstall()
	if !isGivenUp(errA) {
		t.Fatalf("put a: %v, want it given up with %q: m1 has not applied it", errA, rpctypes.ErrTimeoutDueToLeaderFail)
	}
	checkLost(ctx, t, g, ms, errB, 2)
}

func isGivenUp(err error) bool {
	return err != nil && err.Error() == rpctypes.ErrTimeoutDueToLeaderFail.Error()
}

// wait pauses a moment, or fails the test with why once ctx ends.
func wait(ctx context.Context, t *testing.T, why string) {
	t.Helper()
	select {
	case <-ctx.Done():
		t.Fatal(why)
	case <-time.After(5 * time.Millisecond):
	}
}

// pendingProposals reads etcd's etcd_server_proposals_pending, which all
// the members of this process share.
func pendingProposals(t *testing.T) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_server_proposals_pending" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("etcd_server_proposals_pending not registered")
	return 0
}

func TestWritesAreTheRequestsRaftCarries(t *testing.T) {
	get := &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k")}}}
	put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k")}}}
	nested := func(ops ...*pb.RequestOp) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: ops}}}
	}
	for _, c := range []struct {
		name   string
		method string
		req    any
		write  bool
	}{
		{"put", "/etcdserverpb.KV/Put", &pb.PutRequest{}, true},
		{"delete", "/etcdserverpb.KV/DeleteRange", &pb.DeleteRangeRequest{}, true},
		{"compact", "/etcdserverpb.KV/Compact", &pb.CompactionRequest{}, true},
		{"lease grant", "/etcdserverpb.Lease/LeaseGrant", &pb.LeaseGrantRequest{}, true},
		{"lease revoke", "/etcdserverpb.Lease/LeaseRevoke", &pb.LeaseRevokeRequest{}, true},
		{"range", "/etcdserverpb.KV/Range", &pb.RangeRequest{}, false},
		{"status", "/etcdserverpb.Maintenance/Status", &pb.StatusRequest{}, false},
		{"txn that reads", "/etcdserverpb.KV/Txn", &pb.TxnRequest{Success: []*pb.RequestOp{get}, Failure: []*pb.RequestOp{nested(get)}}, false},
		{"txn that writes on failure", "/etcdserverpb.KV/Txn", &pb.TxnRequest{Success: []*pb.RequestOp{get}, Failure: []*pb.RequestOp{put}}, true},
		{"txn that writes in a nested txn", "/etcdserverpb.KV/Txn", &pb.TxnRequest{Success: []*pb.RequestOp{nested(get, put)}}, true},
	} {
		if got := isWrite(c.method, c.req); got != c.write {
			t.Errorf("%s: write %v, want %v", c.name, got, c.write)
		}
	}
}
