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
// The unary interceptor has one more job, for writes raft dropped: while a
// leadership transfer runs (etcdvisor moves leadership off a slow leader)
// or while a member has no leader, raft drops new proposals and etcd
// fails them with "raft proposal dropped", which clientv3 does not resend.
// A dropped proposal never entered the log, so sending it again cannot
// apply it twice: the interceptor asks again on this member for a while,
// and once the gate has closed it refuses instead, so the client resends
// it to another endpoint.
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
	"sync/atomic"
	"time"

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
		if cerr := g.check(method); cerr != nil {
			return nil, cerr
		}
		g.resent.Add(1)
		resp, err = h(ctx, req)
	}
	return resp, err
}

// check is the one decision both interceptors make.
func (g *Gate) check(method string) error {
	r := g.reason.Load()
	if r == nil {
		return nil
	}
	for _, prefix := range fencedServices {
		if strings.HasPrefix(method, prefix) {
			g.refused.Add(1)
			return refusal(g.member, *r)
		}
	}
	return nil
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
			if err := g.check(info.FullMethod); err != nil {
				return nil, err
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
