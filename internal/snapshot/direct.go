package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// memberDialTimeout bounds reaching the member before a save from it, so a
// wrong endpoint fails at once rather than when the caller's context ends.
const memberDialTimeout = 5 * time.Second

// MemberOptions are the settings of a save straight from one member,
// without the daemon, as etcdctl snapshot save takes them. Errors about
// them name etcdvisor snapshot save's flags.
type MemberOptions struct {
	// Endpoint is the member's client URL.
	Endpoint string
	// CACert verifies the member's certificate; Cert and Key, which go
	// together, are the client's. TLS is used with any of them, or for an
	// https:// Endpoint.
	CACert, Cert, Key string
	// File is where the snapshot goes: see SaveTarget.
	File string
	// Compress compresses with zstd (File gets .zst).
	Compress bool
	// Recipients are age public keys (age1...) to encrypt to (File gets
	// .age).
	Recipients []string
	// RateLimit is the most bytes per second read from etcd, like 100MiB or
	// 50MB; "0" is no limit (and "" an error, as from the flag).
	RateLimit string
	// Progress, if set, is called as etcd's stream arrives, with the DB
	// bytes so far and the DB size etcd announced with the first message.
	Progress func(done, total int64)
}

// Check refuses settings that cannot work, before anything is contacted.
func (o MemberOptions) Check() error {
	_, err := o.options()
	return err
}

// options are o as Save takes them.
func (o MemberOptions) options() (Options, error) {
	if (o.Cert == "") != (o.Key == "") {
		return Options{}, errors.New("--cert and --key go together")
	}
	rate, err := humanize.ParseBytes(o.RateLimit)
	if err != nil {
		return Options{}, fmt.Errorf("--rate-limit %q: expected bytes per second, like 100MiB or 50MB", o.RateLimit)
	}
	recipients, err := ParseRecipients(o.Recipients)
	if err != nil {
		return Options{}, fmt.Errorf("--recipient %w", err)
	}
	dir, name, err := SaveTarget(o.File, o.Compress, len(recipients) > 0)
	if err != nil {
		return Options{}, err
	}
	return Options{Dir: dir, Name: name, Compress: o.Compress, Recipients: recipients, RateLimit: int64(rate)}, nil
}

// SaveTarget splits file, where a save from a member is to go, into
// Options' Dir and Name: the name is the base name without the .age, .zst
// and .db that Save appends. Extensions that compress and encrypt would not
// produce are refused, so the file written is never a surprise: "x", "x.db"
// and "x.db.zst" all make x.db.zst when compressing.
func SaveTarget(file string, compress, encrypt bool) (dir, name string, err error) {
	if file == "" || strings.HasSuffix(file, string(filepath.Separator)) {
		return "", "", fmt.Errorf("FILE %q: expected a file name, like /backup/etcd.db", file)
	}
	if fi, err := os.Stat(file); err == nil && fi.IsDir() {
		return "", "", fmt.Errorf("FILE %q is a directory: give a file name in it, like %s", file, filepath.Join(file, "etcd.db"))
	}
	dir, name = filepath.Split(file)
	if dir == "" {
		dir = "."
	}
	var gotAge, gotZst bool
	if n, ok := strings.CutSuffix(name, ".age"); ok {
		name, gotAge = n, true
	}
	if n, ok := strings.CutSuffix(name, ".zst"); ok {
		name, gotZst = n, true
	}
	name = strings.TrimSuffix(name, ".db")
	switch {
	case name == "" || name == "." || name == "..":
		return "", "", fmt.Errorf("FILE %q: expected a file name, like /backup/etcd.db", file)
	case gotZst && !compress:
		return "", "", fmt.Errorf("FILE %q ends in .zst, but without --compress the snapshot is not compressed", file)
	case gotAge && !encrypt:
		return "", "", fmt.Errorf("FILE %q ends in .age, but without --recipient the snapshot is not encrypted", file)
	}
	return filepath.Clean(dir), name, nil
}

// SaveFromMember streams a snapshot from the member at o.Endpoint into
// o.File with Save, as etcdctl snapshot save does, once the member has
// answered a status request within a few seconds. It returns the snapshot
// as List would.
func SaveFromMember(ctx context.Context, o MemberOptions) (Listed, error) {
	so, err := o.options()
	if err != nil {
		return Listed{}, err
	}
	cfg := clientv3.Config{
		Endpoints:   []string{o.Endpoint},
		DialTimeout: memberDialTimeout,
		Logger:      zap.NewNop(), // errors come back as errors
	}
	if o.CACert != "" || o.Cert != "" || strings.HasPrefix(o.Endpoint, "https://") {
		tc, err := transport.TLSInfo{CertFile: o.Cert, KeyFile: o.Key, TrustedCAFile: o.CACert}.ClientConfig()
		if err != nil {
			return Listed{}, fmt.Errorf("TLS from --cacert, --cert and --key: %w", err)
		}
		cfg.TLS = tc
	}
	if o.Progress != nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithChainStreamInterceptor(countSnapshotStream(o.Progress))}
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return Listed{}, fmt.Errorf("--endpoints %s: %w", o.Endpoint, err)
	}
	defer cli.Close()

	// Save would wait for an unreachable member as long as ctx lasts.
	pctx, pcancel := context.WithTimeout(ctx, memberDialTimeout)
	_, err = cli.Status(pctx, o.Endpoint)
	pcancel()
	if err != nil {
		return Listed{}, fmt.Errorf("cannot reach the member at %s within %s: %w", o.Endpoint, memberDialTimeout, err)
	}
	m, err := Save(ctx, cli, o.Endpoint, so)
	if err != nil {
		return Listed{}, err
	}
	return Listed{Manifest: m, Path: filepath.Join(so.Dir, m.File)}, nil
}

// countSnapshotStream reports the bytes of etcd's snapshot stream to
// progress as they arrive; each message says how many bytes remain, which
// gives the total from the first one.
func countSnapshotStream(progress func(done, total int64)) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil || method != "/etcdserverpb.Maintenance/Snapshot" {
			return s, err
		}
		return &countingStream{ClientStream: s, progress: progress}, nil
	}
}

type countingStream struct {
	grpc.ClientStream
	progress func(done, total int64)
	n, total int64
}

func (s *countingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	r, ok := m.(interface {
		GetBlob() []byte
		GetRemainingBytes() uint64
	})
	if err != nil || !ok {
		return err
	}
	if s.total == 0 {
		s.total = int64(len(r.GetBlob())) + int64(r.GetRemainingBytes())
	}
	// The last message is the sha256 trailer, past the total.
	s.n = min(s.n+int64(len(r.GetBlob())), s.total)
	s.progress(s.n, s.total)
	return nil
}
