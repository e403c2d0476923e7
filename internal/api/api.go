// Package api defines the JSON documents of etcdvisor's control socket,
// shared by the daemon that serves them and the CLI that reads them.
package api

import (
	"time"

	"github.com/etcdvisor/etcdvisor/internal/health"
)

// Phases of the daemon, in the order it passes through them.
const (
	PhaseStarting = "starting" // the socket is up; the member is not serving yet
	PhaseReady    = "ready"    // the member serves linearizable reads
	PhaseStopping = "stopping" // shutdown has begun
)

// Status is GET /v1/status: this member as the daemon sees it.
type Status struct {
	Name             string    `json:"name"`
	Phase            string    `json:"phase"`
	EtcdvisorVersion string    `json:"etcdvisorVersion"`
	EtcdVersion      string    `json:"etcdVersion"`
	StartedAt        time.Time `json:"startedAt"`
	DataDir          string    `json:"dataDir"`
	ClientURLs       []string  `json:"clientURLs"`

	// The rest is read from the member; it is empty while the member does
	// not answer, and Error says why.
	MemberID  string `json:"memberID,omitempty"`
	ClusterID string `json:"clusterID,omitempty"`
	IsLeader  bool   `json:"isLeader"`
	LeaderID  string `json:"leaderID,omitempty"`
	IsLearner bool   `json:"isLearner"`
	RaftTerm  uint64 `json:"raftTerm,omitempty"`
	RaftIndex uint64 `json:"raftIndex,omitempty"`
	// RaftAppliedIndex trails RaftIndex while the member applies entries.
	RaftAppliedIndex uint64 `json:"raftAppliedIndex,omitempty"`
	Revision         int64  `json:"revision,omitempty"`
	DBSize           int64  `json:"dbSize,omitempty"`
	DBSizeInUse      int64  `json:"dbSizeInUse,omitempty"`
	// Errors are the member's own complaints, such as raised alarms.
	Errors  []string `json:"errors,omitempty"`
	Members []Member `json:"members,omitempty"`
	Error   string   `json:"error,omitempty"`

	// LastSnapshot is the newest good local snapshot, if any.
	LastSnapshot *SnapshotSummary `json:"lastSnapshot,omitempty"`
	// LastSnapshotError is why the last attempt failed, if it did.
	LastSnapshotError string `json:"lastSnapshotError,omitempty"`
	// Health is the starvation watch's latest report, once it has one.
	Health *health.Report `json:"health,omitempty"`
}

// SnapshotSummary names a snapshot in status.
type SnapshotSummary struct {
	Path      string    `json:"path"`
	CreatedAt time.Time `json:"createdAt"`
	Revision  int64     `json:"revision"`
	Size      int64     `json:"size"`
}

// Member is one member of the cluster as etcd lists it.
type Member struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
	IsLeader   bool     `json:"isLeader"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// MemberHealth is one member and how it answers from this host: GET
// /v1/members.
type MemberHealth struct {
	Member
	// Healthy: the member answered a status request over its client URL,
	// knows a leader, and reports no errors.
	Healthy   bool    `json:"healthy"`
	Error     string  `json:"error,omitempty"`
	RaftTerm  uint64  `json:"raftTerm,omitempty"`
	RaftIndex uint64  `json:"raftIndex,omitempty"`
	DBSize    int64   `json:"dbSize,omitempty"`
	Version   string  `json:"version,omitempty"`
	TookMs    float64 `json:"tookMs,omitempty"`
	// UnreachableSeconds: how long the member has had no live etcdvisor in
	// the registry and no answer on its peer URL; 0 while reachable.
	UnreachableSeconds float64 `json:"unreachableSeconds,omitempty"`
	// LeaderID is the leader this member reports (hex); "" when none.
	LeaderID string `json:"leaderID,omitempty"`
	// Etcdvisor is what the member's etcdvisor publishes in the registry;
	// nil when none is alive there.
	Etcdvisor *EtcdvisorView `json:"etcdvisor,omitempty"`
}

// EtcdvisorView is a member's etcdvisor as its registry record shows it.
type EtcdvisorView struct {
	Version   string    `json:"version"`
	Health    string    `json:"health"`
	Reasons   []string  `json:"reasons,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
	Age       string    `json:"age"`
}

// MemberList is GET /v1/members.
type MemberList struct {
	Members []MemberHealth `json:"members"`
}

// RemoveRequest is POST /v1/members/remove.
type RemoveRequest struct {
	Name  string `json:"name"` // member name or hex ID
	Force bool   `json:"force"`
}

// AddRequest is POST /v1/members: add a learner.
type AddRequest struct {
	Name     string   `json:"name"`
	PeerURLs []string `json:"peerURLs"`
}

// AddResponse tells the new member how to start.
type AddResponse struct {
	ID                  string `json:"id"`
	InitialCluster      string `json:"initialCluster"`
	InitialClusterState string `json:"initialClusterState"`
}

// RollingRequest is POST /v1/cluster/rolling-restart.
type RollingRequest struct {
	Abort bool `json:"abort"`
}
