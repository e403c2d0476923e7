// Package fence takes a starving member out of client traffic: while the
// gate is closed, the member's gRPC server refuses new client requests with
// codes.Unavailable, a retryable error, so etcd clients (kube-apiserver
// among them) go to another endpoint instead of waiting on this member's
// slow disk.
//
// Why refuse rather than close the client listener: etcd's embed API gives
// no handle on its listeners or gRPC servers short of stopping them for
// good, and closing connections would fail requests in flight; a refusal is
// immediate, reversible per request, and clientv3 retries a refused read on
// the next endpoint by itself. A refused write returns to the caller at
// once with Unavailable (clientv3 does not resend writes it cannot prove
// unsent); its retry goes to the next endpoint in the client's round-robin.
//
// Only the services clients use are fenced (KV, Watch, Lease, Lock,
// Election). Maintenance and Cluster stay open: operators, etcdctl and the
// other etcdvisors must still reach the member to see and mend it. Requests
// etcdvisor makes itself use the in-process client, which bypasses gRPC.
package fence

import (
	"context"
	"strings"
	"sync/atomic"

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

// Gate is open (serving) until Close. The zero value is open.
type Gate struct {
	reason atomic.Pointer[string] // nil while open
	member string
}

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

// check is the one decision both interceptors make.
func (g *Gate) check(method string) error {
	r := g.reason.Load()
	if r == nil {
		return nil
	}
	for _, prefix := range fencedServices {
		if strings.HasPrefix(method, prefix) {
			return status.Errorf(codes.Unavailable, "etcdvisor: member %s is not taking client requests while it is critical (%s); use another endpoint", g.member, *r)
		}
	}
	return nil
}

// ServerOptions are the gRPC server options that install the gate; they go
// into etcd's embed.Config.GRPCAdditionalServerOptions.
func (g *Gate) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := g.check(info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := g.check(info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}
