// Package fence takes a starving member out of client traffic: while the
// gate is closed, the member's gRPC server refuses new client requests
// before doing anything with them, so etcd clients (kube-apiserver among
// them) send them to another endpoint instead of waiting on this member's
// slow disk.
//
// Why refuse rather than close the client listener: etcd's embed API gives
// no handle on its listeners or gRPC servers short of stopping them for
// good, and closing connections would fail requests in flight; a refusal is
// immediate and reversible per request.
//
// Why the refusal reads "there is no connection available": clientv3
// resends a write (Put, Delete, Txn) only when the error proves the write
// never reached a server, and the one proof it accepts is codes.Unavailable
// with exactly that message (isSafeRetryMutableRPC in client/v3/retry.go).
// A refused request has not been applied, so the promise holds, and with
// it clientv3 resends the write to the next endpoint of its round-robin
// after its 25 ms backoff instead of failing it to the caller. Any other
// wording would fail every write that lands on a fenced member. Who refused
// and why travel in the status details (an ErrorInfo), and the member
// counts its refusals.
//
// The unary interceptor has three more jobs, all about the moment
// leadership changes hands (etcdvisor moves it off a slow leader):
//
//   - Writes raft dropped. While a leadership transfer runs, or while a
//     member has no leader, raft drops new proposals and etcd fails them
//     with "raft proposal dropped", which clientv3 does not resend. A
//     dropped proposal never entered the log, so sending it again cannot
//     apply it twice: the interceptor asks again on this member for a
//     while, and once the gate has closed it refuses instead, so the
//     client resends it to another endpoint.
//   - Requests that arrive while this member hands its leadership away
//     wait for the handover (BeginMove), and are then checked against the
//     gate again: the gate closes after a move off a critical member, so
//     they are refused, never proposed, and the client resends them to a
//     member that knows the new leader. Proposed instead, they would be
//     dropped until the handover ends and then wait for this member's
//     slow disk to apply them.
//   - Writes lost to a leader change (Attach, giveUpLost). A follower
//     forwards a write to the leader, and a leader in the middle of a
//     transfer drops it without a word to the follower; a leader that
//     loses its leadership loses the writes it has not yet sent. Either
//     way the client would wait out its deadline (etcd's own limit is
//     seven seconds by default). Such a write is given up once a new
//     term has begun on this member and it still has not come back.
//
// Only the services clients use are fenced (KV, Watch, Lease, Lock,
// Election). Maintenance and Cluster stay open: operators, etcdctl and the
// other etcdvisors must still reach the member to see and mend it. Requests
// etcdvisor makes itself use the in-process client, which bypasses gRPC.
package fence

import (
	"cmp"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fencedServices are the gRPC services a closed gate refuses.
var fencedServices = []string{
	"/etcdserverpb.KV/",
	"/etcdserverpb.Watch/",
	"/etcdserverpb.Lease/",
	"/v3lockpb.Lock/",
	"/v3electionpb.Election/",
}

// RetryableMessage is the status message clientv3 takes as proof that a
// request was not sent, and so may be resent to another endpoint.
const RetryableMessage = "there is no connection available"

// ErrorReason and ErrorDomain mark a refusal's ErrorInfo detail.
const (
	ErrorReason = "MEMBER_FENCED"
	ErrorDomain = "etcdvisor"
)

// Gate is open (serving) until Close. The zero value is open.
type Gate struct {
	reason  atomic.Pointer[string] // nil while open
	member  string
	refused atomic.Uint64
	resent  atomic.Uint64
	held    atomic.Uint64
	givenUp atomic.Uint64
	// moving is closed when the leadership move under way ends; nil
	// while none runs.
	moving atomic.Pointer[chan struct{}]
	terms  atomic.Pointer[attached]
	// term holds the writes of the member's current term; termMu orders
	// the start of a new one.
	term   atomic.Pointer[termWrites]
	termMu sync.Mutex
	// dropRetryFor overrides the default bound on resending a dropped
	// proposal; tests that restart a peer meanwhile need longer.
	dropRetryFor time.Duration
}

// Dropped proposals are asked again every dropRetryWait for at most
// dropRetryFor: raft gives a leadership transfer one election timeout
// (1 s by default) before it gives up, and an election takes about as long.
const (
	dropRetryWait = 25 * time.Millisecond
	dropRetryFor  = 3 * time.Second
)

// New returns an open gate for the named member (named in refusals).
func New(member string) *Gate { return &Gate{member: member} }

// Close refuses new client requests, saying why.
func (g *Gate) Close(reason string) { g.reason.Store(&reason) }

// Open serves client requests again.
func (g *Gate) Open() { g.reason.Store(nil) }

// Closed reports whether the gate refuses requests, and why.
func (g *Gate) Closed() (bool, string) {
	if r := g.reason.Load(); r != nil {
		return true, *r
	}
	return false, ""
}

// Refused is how many client requests the gate has refused.
func (g *Gate) Refused() uint64 { return g.refused.Load() }

// Resent is how many dropped proposals this member asked raft for again.
func (g *Gate) Resent() uint64 { return g.resent.Load() }

// Held is how many client requests waited for a leadership move to end.
func (g *Gate) Held() uint64 { return g.held.Load() }

// GivenUp is how many writes the gate gave up on after a leader change.
func (g *Gate) GivenUp() uint64 { return g.givenUp.Load() }

// BeginMove holds new client requests until the returned end is called,
// for the leadership move this member is about to make: raft drops every
// proposal until the handover is over. Once it ends, each held request is
// checked against the gate again, refused if the gate closed meanwhile,
// and otherwise goes ahead. end may be called more than once.
func (g *Gate) BeginMove() (end func()) {
	ch := make(chan struct{})
	g.moving.Store(&ch)
	var once sync.Once
	return func() {
		once.Do(func() {
			g.moving.CompareAndSwap(&ch, nil)
			close(ch)
		})
	}
}

// Terms is what the gate reads of its member to tell a write lost to a
// leader change; *etcdserver.EtcdServer has it.
type Terms interface {
	// FirstCommitInTermNotify is closed once the member applies the
	// first entry of a later term: a new leader's empty entry.
	FirstCommitInTermNotify() <-chan struct{}
	CommittedIndex() uint64
	AppliedIndex() uint64
	// StopNotify is closed once the member has stopped.
	StopNotify() <-chan struct{}
}

type attached struct {
	t     Terms
	grace time.Duration
}

// Attach lets the gate give up on writes lost to a leader change (see
// giveUpLost); before it, they wait for the client's deadline. grace is
// how long a write may still take once a new term began: the new leader
// may have taken it, and needs a round trip and its fsyncs to commit it.
func (g *Gate) Attach(t Terms, grace time.Duration) {
	g.terms.Store(&attached{t: t, grace: grace})
}

// errLost is the cause given to the writes of a term that has ended.
var errLost = errors.New("lost to a leader change")

// termWrites are the writes taken while the member was in one term: from
// one new term's first applied entry (or a handover of its own) until the
// next one's.
type termWrites struct {
	// later is the member's FirstCommitInTermNotify as the term began:
	// it closes as the term ends.
	later <-chan struct{}
	// lost is cancelled (with errLost) once the term has ended and the
	// writes still pending in it are to be given up.
	lost   context.Context
	cancel context.CancelCauseFunc
}

// currentTerm returns the writes of the member's current term, and starts
// watching for the term's end when the term is new. nil before Attach.
func (g *Gate) currentTerm() *termWrites {
	a := g.terms.Load()
	if a == nil {
		return nil
	}
	later := a.t.FirstCommitInTermNotify()
	if tw := g.term.Load(); tw != nil && tw.later == later {
		return tw
	}
	g.termMu.Lock()
	defer g.termMu.Unlock()
	if tw := g.term.Load(); tw != nil && tw.later == later {
		return tw
	}
	lost, cancel := context.WithCancelCause(context.Background())
	tw := &termWrites{later: later, lost: lost, cancel: cancel}
	g.term.Store(tw)
	go g.endTerm(a, tw)
	return tw
}

// endTerm waits for the term of tw to end and then gives up its writes
// still pending.
//
// Once this member has applied the first entry of a later term, every
// entry of the earlier terms that will ever be committed lies before that
// entry (the terms along a raft log only grow), so it has been applied
// here, or is in the batch being applied. A write still pending once
// that batch is applied was lost: dropped by a leader in the middle of a
// transfer (which tells the follower that forwarded it nothing), or left
// unsent in the log of a leader that lost its leadership (see package
// raftpeer). Or it reached the new leader only after its term began, a
// proposal forwarded again: the grace gives such a write a round trip to
// come back. After it, the writes of the ended term are given up.
//
// Why not wait for this member to apply whatever it learns is committed
// during the grace: on a slow disk, the member applies only once per
// fsync, and that would keep the lost writes' clients waiting a whole
// fsync longer for the rare write forwarded again, whose client is told
// "timed out" either way: the outcome of a timed-out write is unknown.
func (g *Gate) endTerm(a *attached, tw *termWrites) {
	stopped := a.t.StopNotify()
	select {
	case <-tw.later:
	case <-stopped:
		return
	}
	committed := a.t.CommittedIndex()
	poll := time.NewTicker(applyPoll)
	defer poll.Stop()
	for a.t.AppliedIndex() < committed {
		select {
		case <-poll.C:
		case <-stopped:
			return
		}
	}
	grace := time.NewTimer(a.grace)
	defer grace.Stop()
	select {
	case <-grace.C:
	case <-stopped:
		return
	}
	tw.cancel(errLost)
}

// HandedOver gives up, after the grace, the writes this member took
// before it handed its leadership away, and starts a new set for the
// writes it takes from now on.
//
// Those writes are lost (the member never sent them), or they were sent
// and the new leader commits them, and this member answers them once it
// applies them. It hands leadership away because it cannot keep up: on a
// slow disk it applies a slow fsync or two later (etcd's backend holds
// its lock through a commit's fsyncs), and it would reach the new term,
// which ends their set (endTerm), no sooner. Their clients are told, with
// etcd's own message for a leader change, that they timed out: the
// outcome is unknown to them, which is the truth.
func (g *Gate) HandedOver() {
	a := g.terms.Load()
	if a == nil {
		return
	}
	lost, cancel := context.WithCancelCause(context.Background())
	tw := &termWrites{later: a.t.FirstCommitInTermNotify(), lost: lost, cancel: cancel}
	g.termMu.Lock()
	old := g.term.Swap(tw)
	g.termMu.Unlock()
	go g.endTerm(a, tw)
	if old != nil {
		time.AfterFunc(a.grace, func() { old.cancel(errLost) })
	}
}

// giveUpLost runs call, and gives up on it once the term it was taken in
// has ended and it has not come back (see endTerm). It is then answered
// with etcd's own "request timed out, possibly due to previous leader
// failure". As with any timeout, the client does not learn the outcome (a
// proposal forwarded again may still arrive), but it learns within a
// fraction of a second instead of at its deadline, and clientv3 does not
// resend the write.
//
// The cost on the way of every write is two context registrations, no
// goroutine: the write's context is cancelled when the term's is.
func (g *Gate) giveUpLost(ctx context.Context, call func(context.Context) (any, error)) (any, error) {
	tw := g.currentTerm()
	if tw == nil {
		return call(ctx)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(tw.lost, func() { cancel(errLost) })
	defer stop()
	resp, err := call(ctx)
	if err != nil && errors.Is(context.Cause(ctx), errLost) {
		g.givenUp.Add(1)
		return nil, rpctypes.ErrGRPCTimeoutDueToLeaderFail
	}
	return resp, err
}

// resendDropped calls h again while raft drops the proposal, until it is
// taken, the gate closes (then the refusal sends the client elsewhere),
// dropRetryFor passes, or ctx ends.
func (g *Gate) resendDropped(ctx context.Context, method string, req any, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	deadline := time.Now().Add(cmp.Or(g.dropRetryFor, dropRetryFor))
	for isDropped(err) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return resp, err
		case <-time.After(dropRetryWait):
		}
		if aerr := g.admit(ctx, method); aerr != nil {
			return nil, aerr
		}
		g.resent.Add(1)
		resp, err = h(ctx, req)
	}
	return resp, err
}

// applyPoll is how often endTerm looks at the applied index.
const applyPoll = 5 * time.Millisecond

// admit refuses a client request while the gate is closed, and holds it
// while a leadership move runs, checking it again once the move is over.
func (g *Gate) admit(ctx context.Context, method string) error {
	if err := g.check(method); err != nil {
		return err
	}
	p := g.moving.Load()
	if p == nil || !fenced(method) {
		return nil
	}
	g.held.Add(1)
	select {
	case <-*p:
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
	return g.check(method)
}

// check refuses a request of a fenced service while the gate is closed.
func (g *Gate) check(method string) error {
	r := g.reason.Load()
	if r == nil || !fenced(method) {
		return nil
	}
	g.refused.Add(1)
	return refusal(g.member, *r)
}

func fenced(method string) bool {
	for _, prefix := range fencedServices {
		if strings.HasPrefix(method, prefix) {
			return true
		}
	}
	return false
}

// isWrite tells the client requests raft carries and etcd answers only
// once applied: the ones a leader change can lose.
func isWrite(method string, req any) bool {
	switch method {
	case "/etcdserverpb.KV/Put", "/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Compact",
		"/etcdserverpb.Lease/LeaseGrant", "/etcdserverpb.Lease/LeaseRevoke":
		return true
	case "/etcdserverpb.KV/Txn":
		t, ok := req.(*pb.TxnRequest)
		return !ok || !readOnly(t)
	}
	return false
}

// readOnly tells a txn that only reads: etcd serves it as a linearizable
// read, which etcd itself asks again after a leader change.
func readOnly(t *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			switch r := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
			case *pb.RequestOp_RequestTxn:
				if !readOnly(r.RequestTxn) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// isDropped tells raft's ErrProposalDropped, which etcd's handlers pass on
// as a status with code Unknown and raft's message.
func isDropped(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, raft.ErrProposalDropped) {
		return true
	}
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unknown && st.Message() == raft.ErrProposalDropped.Error()
}

// refusal is the error a fenced request gets: retryable by clientv3, with
// the member and the reason in an ErrorInfo detail.
func refusal(member, reason string) error {
	st := status.New(codes.Unavailable, RetryableMessage)
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   ErrorReason,
		Domain:   ErrorDomain,
		Metadata: map[string]string{"member": member, "why": "member is critical: " + reason},
	})
	if err != nil { // only if the detail cannot be marshalled
		return st.Err()
	}
	return withInfo.Err()
}

// Info returns the member and reason of a fence refusal, and false for any
// other error.
func Info(err error) (member, why string, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus {
		return "", "", false
	}
	for _, d := range st.Details() {
		if ei, isInfo := d.(*errdetails.ErrorInfo); isInfo && ei.Reason == ErrorReason && ei.Domain == ErrorDomain {
			return ei.Metadata["member"], ei.Metadata["why"], true
		}
	}
	return "", "", false
}

// ServerOptions are the gRPC server options that install the gate; they go
// into etcd's embed.Config.GRPCAdditionalServerOptions.
func (g *Gate) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := g.admit(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			if isWrite(info.FullMethod, req) {
				return g.giveUpLost(ctx, func(ctx context.Context) (any, error) {
					return g.resendDropped(ctx, info.FullMethod, req, h)
				})
			}
			return g.resendDropped(ctx, info.FullMethod, req, h)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := g.check(info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}
