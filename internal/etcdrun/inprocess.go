package etcdrun

import (
	"context"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy/adapter"
	"google.golang.org/grpc"
)

// The in-process client calls etcd's server functions directly, as
// etcd's v3client does, with one difference: every call passes a
// callGate. A direct call made after etcd has closed reads a closed
// backend, and that crashes the whole process (a nil dereference in a
// serializable Range, seen when a daemon was stopped while its rolling
// actor read the registry). Stop closes the gate, and waits for the calls
// under way, before it closes etcd; later calls fail with etcd's own
// "server stopped", which callers already handle.

// callGate counts the calls under way and refuses new ones once closed.
type callGate struct {
	mu     sync.Mutex
	closed bool
	calls  sync.WaitGroup
}

func (g *callGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.calls.Add(1)
	return true
}

func (g *callGate) leave() { g.calls.Done() }

// refuse refuses new calls at once, without waiting for those under way.
func (g *callGate) refuse() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// close refuses new calls and waits, until ctx ends, for those under way.
func (g *callGate) close(ctx context.Context) error {
	g.refuse()
	idle := make(chan struct{})
	go func() {
		g.calls.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unary makes one gated call.
func unary[Req, Resp any](g *callGate, ctx context.Context, in Req, opts []grpc.CallOption,
	call func(context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	if !g.enter() {
		var zero Resp
		return zero, rpctypes.ErrGRPCStopped
	}
	defer g.leave()
	return call(ctx, in, opts...)
}

// stream gates the opening of a stream. The stream itself is not held:
// watches and lease keep-alives last as long as the client, which Stop
// closes first, and a snapshot stream's read transaction is one etcd's
// close waits for by itself.
func stream[S any](g *callGate, open func() (S, error)) (S, error) {
	if !g.enter() {
		var zero S
		return zero, rpctypes.ErrGRPCStopped
	}
	defer g.leave()
	return open()
}

// newInProcessClient is v3client.New with every call through g.
func newInProcessClient(s *etcdserver.EtcdServer, g *callGate) *clientv3.Client {
	c := clientv3.NewCtxClient(context.Background(), clientv3.WithZapLogger(s.Logger()))
	c.KV = clientv3.NewKVFromKVClient(gatedKV{g, adapter.KvServerToKvClient(v3rpc.NewQuotaKVServer(s))}, c)
	c.Lease = clientv3.NewLeaseFromLeaseClient(gatedLease{g, adapter.LeaseServerToLeaseClient(v3rpc.NewQuotaLeaseServer(s))}, c, time.Second)
	c.Watcher = blankWatcher{clientv3.NewWatchFromWatchClient(gatedWatch{g, adapter.WatchServerToWatchClient(v3rpc.NewWatchServer(s))}, c)}
	c.Maintenance = clientv3.NewMaintenanceFromMaintenanceClient(gatedMaintenance{g, adapter.MaintenanceServerToMaintenanceClient(v3rpc.NewMaintenanceServer(s, nil))}, c)
	c.Cluster = clientv3.NewClusterFromClusterClient(gatedCluster{g, adapter.ClusterServerToClusterClient(v3rpc.NewClusterServer(s))}, c)
	c.Auth = clientv3.NewAuthFromAuthClient(gatedAuth{g, adapter.AuthServerToAuthClient(v3rpc.NewAuthServer(s))}, c)
	return c
}

// blankWatcher hides the caller's context values from etcd's watch
// server, as v3client does: trace data in them is not synchronised, and
// formatting the context raced with its writers.
type blankWatcher struct{ clientv3.Watcher }

type blankContext struct{ context.Context }

func (blankContext) String() string { return "(blankCtx)" }

func (w blankWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	return w.Watcher.Watch(blankContext{ctx}, key, opts...)
}

// The gated clients hold the adapter in a named field rather than
// embedding it, so the compiler proves that every method is gated.
var (
	_ pb.KVClient          = gatedKV{}
	_ pb.LeaseClient       = gatedLease{}
	_ pb.WatchClient       = gatedWatch{}
	_ pb.MaintenanceClient = gatedMaintenance{}
	_ pb.ClusterClient     = gatedCluster{}
	_ pb.AuthClient        = gatedAuth{}
)

type gatedKV struct {
	g *callGate
	c pb.KVClient
}

func (k gatedKV) Range(ctx context.Context, in *pb.RangeRequest, opts ...grpc.CallOption) (*pb.RangeResponse, error) {
	return unary(k.g, ctx, in, opts, k.c.Range)
}

func (k gatedKV) RangeStream(ctx context.Context, in *pb.RangeRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[pb.RangeStreamResponse], error) {
	return stream(k.g, func() (grpc.ServerStreamingClient[pb.RangeStreamResponse], error) {
		return k.c.RangeStream(ctx, in, opts...)
	})
}

func (k gatedKV) Put(ctx context.Context, in *pb.PutRequest, opts ...grpc.CallOption) (*pb.PutResponse, error) {
	return unary(k.g, ctx, in, opts, k.c.Put)
}

func (k gatedKV) DeleteRange(ctx context.Context, in *pb.DeleteRangeRequest, opts ...grpc.CallOption) (*pb.DeleteRangeResponse, error) {
	return unary(k.g, ctx, in, opts, k.c.DeleteRange)
}

func (k gatedKV) Txn(ctx context.Context, in *pb.TxnRequest, opts ...grpc.CallOption) (*pb.TxnResponse, error) {
	return unary(k.g, ctx, in, opts, k.c.Txn)
}

func (k gatedKV) Compact(ctx context.Context, in *pb.CompactionRequest, opts ...grpc.CallOption) (*pb.CompactionResponse, error) {
	return unary(k.g, ctx, in, opts, k.c.Compact)
}

type gatedLease struct {
	g *callGate
	c pb.LeaseClient
}

func (l gatedLease) LeaseGrant(ctx context.Context, in *pb.LeaseGrantRequest, opts ...grpc.CallOption) (*pb.LeaseGrantResponse, error) {
	return unary(l.g, ctx, in, opts, l.c.LeaseGrant)
}

func (l gatedLease) LeaseRevoke(ctx context.Context, in *pb.LeaseRevokeRequest, opts ...grpc.CallOption) (*pb.LeaseRevokeResponse, error) {
	return unary(l.g, ctx, in, opts, l.c.LeaseRevoke)
}

func (l gatedLease) LeaseKeepAlive(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse], error) {
	return stream(l.g, func() (grpc.BidiStreamingClient[pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse], error) {
		return l.c.LeaseKeepAlive(ctx, opts...)
	})
}

func (l gatedLease) LeaseTimeToLive(ctx context.Context, in *pb.LeaseTimeToLiveRequest, opts ...grpc.CallOption) (*pb.LeaseTimeToLiveResponse, error) {
	return unary(l.g, ctx, in, opts, l.c.LeaseTimeToLive)
}

func (l gatedLease) LeaseLeases(ctx context.Context, in *pb.LeaseLeasesRequest, opts ...grpc.CallOption) (*pb.LeaseLeasesResponse, error) {
	return unary(l.g, ctx, in, opts, l.c.LeaseLeases)
}

type gatedWatch struct {
	g *callGate
	c pb.WatchClient
}

func (w gatedWatch) Watch(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[pb.WatchRequest, pb.WatchResponse], error) {
	return stream(w.g, func() (grpc.BidiStreamingClient[pb.WatchRequest, pb.WatchResponse], error) {
		return w.c.Watch(ctx, opts...)
	})
}

type gatedMaintenance struct {
	g *callGate
	c pb.MaintenanceClient
}

func (m gatedMaintenance) Alarm(ctx context.Context, in *pb.AlarmRequest, opts ...grpc.CallOption) (*pb.AlarmResponse, error) {
	return unary(m.g, ctx, in, opts, m.c.Alarm)
}

func (m gatedMaintenance) Status(ctx context.Context, in *pb.StatusRequest, opts ...grpc.CallOption) (*pb.StatusResponse, error) {
	return unary(m.g, ctx, in, opts, m.c.Status)
}

func (m gatedMaintenance) Defragment(ctx context.Context, in *pb.DefragmentRequest, opts ...grpc.CallOption) (*pb.DefragmentResponse, error) {
	return unary(m.g, ctx, in, opts, m.c.Defragment)
}

func (m gatedMaintenance) Hash(ctx context.Context, in *pb.HashRequest, opts ...grpc.CallOption) (*pb.HashResponse, error) {
	return unary(m.g, ctx, in, opts, m.c.Hash)
}

func (m gatedMaintenance) HashKV(ctx context.Context, in *pb.HashKVRequest, opts ...grpc.CallOption) (*pb.HashKVResponse, error) {
	return unary(m.g, ctx, in, opts, m.c.HashKV)
}

func (m gatedMaintenance) Snapshot(ctx context.Context, in *pb.SnapshotRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[pb.SnapshotResponse], error) {
	return stream(m.g, func() (grpc.ServerStreamingClient[pb.SnapshotResponse], error) { return m.c.Snapshot(ctx, in, opts...) })
}

func (m gatedMaintenance) MoveLeader(ctx context.Context, in *pb.MoveLeaderRequest, opts ...grpc.CallOption) (*pb.MoveLeaderResponse, error) {
	return unary(m.g, ctx, in, opts, m.c.MoveLeader)
}

func (m gatedMaintenance) Downgrade(ctx context.Context, in *pb.DowngradeRequest, opts ...grpc.CallOption) (*pb.DowngradeResponse, error) {
	return unary(m.g, ctx, in, opts, m.c.Downgrade)
}

type gatedCluster struct {
	g *callGate
	c pb.ClusterClient
}

func (c gatedCluster) MemberAdd(ctx context.Context, in *pb.MemberAddRequest, opts ...grpc.CallOption) (*pb.MemberAddResponse, error) {
	return unary(c.g, ctx, in, opts, c.c.MemberAdd)
}

func (c gatedCluster) MemberRemove(ctx context.Context, in *pb.MemberRemoveRequest, opts ...grpc.CallOption) (*pb.MemberRemoveResponse, error) {
	return unary(c.g, ctx, in, opts, c.c.MemberRemove)
}

func (c gatedCluster) MemberUpdate(ctx context.Context, in *pb.MemberUpdateRequest, opts ...grpc.CallOption) (*pb.MemberUpdateResponse, error) {
	return unary(c.g, ctx, in, opts, c.c.MemberUpdate)
}

func (c gatedCluster) MemberList(ctx context.Context, in *pb.MemberListRequest, opts ...grpc.CallOption) (*pb.MemberListResponse, error) {
	return unary(c.g, ctx, in, opts, c.c.MemberList)
}

func (c gatedCluster) MemberPromote(ctx context.Context, in *pb.MemberPromoteRequest, opts ...grpc.CallOption) (*pb.MemberPromoteResponse, error) {
	return unary(c.g, ctx, in, opts, c.c.MemberPromote)
}

type gatedAuth struct {
	g *callGate
	c pb.AuthClient
}

func (a gatedAuth) AuthEnable(ctx context.Context, in *pb.AuthEnableRequest, opts ...grpc.CallOption) (*pb.AuthEnableResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.AuthEnable)
}

func (a gatedAuth) AuthDisable(ctx context.Context, in *pb.AuthDisableRequest, opts ...grpc.CallOption) (*pb.AuthDisableResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.AuthDisable)
}

func (a gatedAuth) AuthStatus(ctx context.Context, in *pb.AuthStatusRequest, opts ...grpc.CallOption) (*pb.AuthStatusResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.AuthStatus)
}

func (a gatedAuth) Authenticate(ctx context.Context, in *pb.AuthenticateRequest, opts ...grpc.CallOption) (*pb.AuthenticateResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.Authenticate)
}

func (a gatedAuth) UserAdd(ctx context.Context, in *pb.AuthUserAddRequest, opts ...grpc.CallOption) (*pb.AuthUserAddResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.UserAdd)
}

func (a gatedAuth) UserGet(ctx context.Context, in *pb.AuthUserGetRequest, opts ...grpc.CallOption) (*pb.AuthUserGetResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.UserGet)
}

func (a gatedAuth) UserList(ctx context.Context, in *pb.AuthUserListRequest, opts ...grpc.CallOption) (*pb.AuthUserListResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.UserList)
}

func (a gatedAuth) UserDelete(ctx context.Context, in *pb.AuthUserDeleteRequest, opts ...grpc.CallOption) (*pb.AuthUserDeleteResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.UserDelete)
}

func (a gatedAuth) UserChangePassword(ctx context.Context, in *pb.AuthUserChangePasswordRequest, opts ...grpc.CallOption) (*pb.AuthUserChangePasswordResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.UserChangePassword)
}

func (a gatedAuth) UserGrantRole(ctx context.Context, in *pb.AuthUserGrantRoleRequest, opts ...grpc.CallOption) (*pb.AuthUserGrantRoleResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.UserGrantRole)
}

func (a gatedAuth) UserRevokeRole(ctx context.Context, in *pb.AuthUserRevokeRoleRequest, opts ...grpc.CallOption) (*pb.AuthUserRevokeRoleResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.UserRevokeRole)
}

func (a gatedAuth) RoleAdd(ctx context.Context, in *pb.AuthRoleAddRequest, opts ...grpc.CallOption) (*pb.AuthRoleAddResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.RoleAdd)
}

func (a gatedAuth) RoleGet(ctx context.Context, in *pb.AuthRoleGetRequest, opts ...grpc.CallOption) (*pb.AuthRoleGetResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.RoleGet)
}

func (a gatedAuth) RoleList(ctx context.Context, in *pb.AuthRoleListRequest, opts ...grpc.CallOption) (*pb.AuthRoleListResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.RoleList)
}

func (a gatedAuth) RoleDelete(ctx context.Context, in *pb.AuthRoleDeleteRequest, opts ...grpc.CallOption) (*pb.AuthRoleDeleteResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.RoleDelete)
}

func (a gatedAuth) RoleGrantPermission(ctx context.Context, in *pb.AuthRoleGrantPermissionRequest, opts ...grpc.CallOption) (*pb.AuthRoleGrantPermissionResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.RoleGrantPermission)
}

func (a gatedAuth) RoleRevokePermission(ctx context.Context, in *pb.AuthRoleRevokePermissionRequest, opts ...grpc.CallOption) (*pb.AuthRoleRevokePermissionResponse, error) {
	return unary(a.g, ctx, in, opts, a.c.RoleRevokePermission)
}
