package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/output"
	"github.com/etcdvisor/etcdvisor/internal/progress"
	"github.com/etcdvisor/etcdvisor/internal/snapshot"
)

// snapshotDialTimeout bounds reaching the member before a direct save, so
// a wrong --endpoints fails at once rather than after --timeout.
const snapshotDialTimeout = 5 * time.Second

func newSnapshotCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, list, inspect, verify and restore snapshots of etcd",
		Long: `Save, list, inspect, verify and restore snapshots of etcd.

A snapshot file is etcd's DB with etcd's sha256 trailer, as etcdctl snapshot
save writes it, optionally compressed with zstd (.zst) and then encrypted
with age (.age). status, verify and restore read every form; give
--identity for an encrypted one.

Take one through the daemon:        etcdvisor snapshot save
Take one straight from a member:    etcdvisor snapshot save --endpoints https://10.0.0.1:2379 --cacert ca.crt --cert c.crt --key c.key /backup/etcd.db
Check one:                          etcdvisor snapshot verify /backup/etcd.db
Make a new member's data dir:       etcdvisor snapshot restore /backup/etcd.db --data-dir /var/lib/etcd-restored`,
	}
	cmd.AddCommand(newSnapshotSaveCommand(), newSnapshotListCommand(), newSnapshotStatusCommand(),
		newSnapshotVerifyCommand(), newSnapshotRestoreCommand())
	return cmd
}

type snapshotSaveOptions struct {
	client  clientOptions
	format  string
	timeout time.Duration

	// Straight to a member, without the daemon.
	endpoint   string
	cacert     string
	cert       string
	key        string
	compress   bool
	recipients []string
	rateLimit  string
}

// snapshotDirectFlags are the flags of a save straight from a member; the
// daemon takes those settings from its config's snapshot section.
var snapshotDirectFlags = []string{"cacert", "cert", "key", "compress", "recipient", "rate-limit"}

// snapshotDaemonFlags find the daemon; a direct save does not talk to it.
var snapshotDaemonFlags = []string{"socket", "config", "data-dir"}

func newSnapshotSaveCommand() *cobra.Command {
	var o snapshotSaveOptions
	cmd := &cobra.Command{
		Use:   "save [--endpoints URL FILE]",
		Short: "Take a snapshot: through the daemon, or straight from a member with --endpoints",
		Long: `Take a snapshot of the member.

With no arguments, ask the daemon: it takes the snapshot as its config's
snapshot section says (dir, compression, recipients, rate limit, hooks,
retention), and this prints where it went. If the wait outlasts --timeout,
the daemon still finishes it; snapshot list shows it then.

With --endpoints URL FILE, stream a snapshot straight from the member at URL
into FILE, as etcdctl snapshot save does; no daemon is needed. FILE's
directory is created if missing, and its name without .db, .zst and .age
is the snapshot's name: the file written is NAME.db, NAME.db.zst with
--compress, then .age appended with --recipient, so "x", "x.db" and
"x.db.zst" all write x.db.zst with --compress. A manifest,
NAME.manifest.json, is written beside it. An existing file is never
replaced.`,
		Args: cobra.ArbitraryArgs, // how many depends on --endpoints: checked in RunE
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(cmd.Flags(), args); err != nil {
				return usageError{fmt.Errorf("%s: %w (usage: %s)", cmd.CommandPath(), err, cmd.UseLine())}
			}
			if o.endpoint == "" {
				return o.viaDaemon(cmd)
			}
			return o.direct(cmd, args[0])
		},
	}
	o.client.bind(cmd)
	f := cmd.Flags()
	f.StringVarP(&o.format, "write-out", "w", output.Table, "output format: table or json")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	f.StringVar(&o.endpoint, "endpoints", "", "save straight from the member at this client URL, without the daemon (one URL)")
	f.StringVar(&o.cacert, "cacert", "", "with --endpoints: CA bundle to verify the member's certificate")
	f.StringVar(&o.cert, "cert", "", "with --endpoints: client certificate")
	f.StringVar(&o.key, "key", "", "with --endpoints: client certificate's key")
	f.BoolVar(&o.compress, "compress", false, "with --endpoints: compress with zstd (appends .zst)")
	f.StringArrayVar(&o.recipients, "recipient", nil, "with --endpoints: encrypt to this age public key (age1...; appends .age); repeat for more")
	f.StringVar(&o.rateLimit, "rate-limit", "0", "with --endpoints: read at most this many bytes per second from etcd, like 100MiB; 0: no limit")
	return cmd
}

// check refuses flags and arguments that do not go together, before
// anything is contacted.
func (o *snapshotSaveOptions) check(flags *pflag.FlagSet, args []string) error {
	if err := output.CheckFormat(o.format); err != nil {
		return err
	}
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout %s: expected a positive duration", o.timeout)
	}
	if !flags.Changed("endpoints") {
		if len(args) != 0 {
			return fmt.Errorf("FILE %q is for --endpoints; the daemon names its snapshots itself, in its snapshot.dir", args[0])
		}
		for _, name := range snapshotDirectFlags {
			if flags.Changed(name) {
				return fmt.Errorf("--%s is for --endpoints; the daemon follows its config's snapshot section", name)
			}
		}
		return nil
	}
	for _, name := range snapshotDaemonFlags {
		if flags.Changed(name) {
			return fmt.Errorf("--%s finds the daemon; --endpoints saves without it", name)
		}
	}
	if strings.TrimSpace(o.endpoint) == "" || strings.ContainsAny(o.endpoint, ", ") {
		return fmt.Errorf("--endpoints %q: expected one client URL, like https://10.0.0.1:2379", o.endpoint)
	}
	if len(args) != 1 {
		return fmt.Errorf("--endpoints needs FILE, the snapshot to write; got %d arguments", len(args))
	}
	if (o.cert == "") != (o.key == "") {
		return errors.New("--cert and --key go together")
	}
	if _, err := o.rateLimitBytes(); err != nil {
		return err
	}
	if _, err := o.ageRecipients(); err != nil {
		return err
	}
	_, _, err := snapshotTarget(args[0], o.compress, len(o.recipients) > 0)
	return err
}

func (o *snapshotSaveOptions) rateLimitBytes() (int64, error) {
	n, err := humanize.ParseBytes(o.rateLimit)
	if err != nil {
		return 0, fmt.Errorf("--rate-limit %q: expected bytes per second, like 100MiB or 50MB", o.rateLimit)
	}
	return int64(n), nil
}

// ageRecipients parses --recipient as the daemon parses
// snapshot.recipients.
func (o *snapshotSaveOptions) ageRecipients() ([]age.Recipient, error) {
	var out []age.Recipient
	for _, s := range o.recipients {
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("--recipient %q: %w (expected an age public key, age1..., as age-keygen prints)", s, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// snapshotTarget splits FILE of a direct save into snapshot.Options' Dir
// and Name: the name is the base name without the .age, .zst and .db that
// Save appends. Extensions that the flags would not produce are refused,
// so the file written is never a surprise.
func snapshotTarget(file string, compress, encrypt bool) (dir, name string, err error) {
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

// viaDaemon asks the daemon for a snapshot and waits for it.
func (o *snapshotSaveOptions) viaDaemon(cmd *cobra.Command) error {
	c, err := o.client.client()
	if err != nil {
		return err
	}
	ctx, cancel := interruptible(o.timeout)
	defer cancel()
	bar := progress.New(os.Stderr, "saving through the daemon")
	defer bar.Stop()
	var got snapshot.Listed
	err = c.Post(ctx, "/v1/snapshots", nil, &got)
	bar.Stop()
	if err != nil {
		if ctx.Err() != nil {
			// The daemon takes the snapshot without the request's context.
			return fmt.Errorf("%s; the daemon goes on with the snapshot, and snapshot list shows it when it is done", stopReason(ctx, o.timeout))
		}
		return err
	}
	return output.SnapshotSaved(cmd.OutOrStdout(), o.format, got)
}

// direct streams a snapshot from one member into file, as etcdctl does.
func (o *snapshotSaveOptions) direct(cmd *cobra.Command, file string) error {
	recipients, _ := o.ageRecipients() // checked
	rate, _ := o.rateLimitBytes()      // checked
	dir, name, _ := snapshotTarget(file, o.compress, len(recipients) > 0)

	cfg := clientv3.Config{
		Endpoints:   []string{o.endpoint},
		DialTimeout: snapshotDialTimeout,
		Logger:      zap.NewNop(), // errors come back as errors
	}
	if o.cacert != "" || o.cert != "" || strings.HasPrefix(o.endpoint, "https://") {
		tc, err := transport.TLSInfo{CertFile: o.cert, KeyFile: o.key, TrustedCAFile: o.cacert}.ClientConfig()
		if err != nil {
			return fmt.Errorf("TLS from --cacert, --cert and --key: %w", err)
		}
		cfg.TLS = tc
	}
	bar := progress.New(os.Stderr, "saving "+name+" from "+o.endpoint)
	defer bar.Stop()
	cfg.DialOptions = []grpc.DialOption{grpc.WithChainStreamInterceptor(countSnapshotStream(bar))}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return fmt.Errorf("--endpoints %s: %w", o.endpoint, err)
	}
	defer cli.Close()

	ctx, cancel := interruptible(o.timeout)
	defer cancel()
	// Save would wait for an unreachable member as long as --timeout.
	pctx, pcancel := context.WithTimeout(ctx, snapshotDialTimeout)
	_, err = cli.Status(pctx, o.endpoint)
	pcancel()
	if err != nil {
		return fmt.Errorf("cannot reach the member at %s within %s: %w", o.endpoint, snapshotDialTimeout, err)
	}
	// The stream arrives as 32 KiB gRPC messages that are garbage at once;
	// at the default GOGC the heap doubles on them. Half that keeps a save
	// of any size near 45 MiB resident, for a few percent of CPU.
	debug.SetGCPercent(50)
	m, err := snapshot.Save(ctx, cli, o.endpoint, snapshot.Options{
		Dir:        dir,
		Name:       name,
		Compress:   o.compress,
		Recipients: recipients,
		RateLimit:  rate,
	})
	bar.Stop()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s; nothing was kept: %w", stopReason(ctx, o.timeout), err)
		}
		return err
	}
	return output.SnapshotSaved(cmd.OutOrStdout(), o.format, snapshot.Listed{Manifest: m, Path: filepath.Join(dir, m.File)})
}

// countSnapshotStream reports the bytes of etcd's snapshot stream to bar as
// they arrive; each message says how many bytes remain, which gives the
// total from the first one.
func countSnapshotStream(bar *progress.Bar) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil || method != "/etcdserverpb.Maintenance/Snapshot" {
			return s, err
		}
		return &countingStream{ClientStream: s, bar: bar}, nil
	}
}

type countingStream struct {
	grpc.ClientStream
	bar      *progress.Bar
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
		s.bar.SetTotal(s.total)
	}
	// The last message is the sha256 trailer, past the total.
	s.n = min(s.n+int64(len(r.GetBlob())), s.total)
	s.bar.Set(s.n)
	return nil
}

// interruptible is a context that ends after timeout, or at Ctrl-C or
// SIGTERM, so Save removes what it wrote instead of leaving a .part.
func interruptible(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, func() { cancel(); stop() }
}

func stopReason(ctx context.Context, timeout time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("gave up after --timeout %s", timeout)
	}
	return "interrupted"
}

func newSnapshotListCommand() *cobra.Command {
	var (
		o      clientOptions
		format string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the daemon's good snapshots, newest first",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.CheckFormat(format); err != nil {
				return usageError{err}
			}
			var l output.SnapshotList
			if err := o.get("/v1/snapshots", &l); err != nil {
				return err
			}
			return output.Snapshots(cmd.OutOrStdout(), format, l)
		},
	}
	o.bind(cmd)
	cmd.Flags().StringVarP(&format, "write-out", "w", output.Table, "output format: table or json")
	return cmd
}

// snapshotReadOptions are the flags of the commands that read a snapshot
// file: the identities that decrypt it and where its plaintext may go.
type snapshotReadOptions struct {
	identities []string
	tmpDir     string
}

func (o *snapshotReadOptions) bind(cmd *cobra.Command, tmpDir bool) {
	cmd.Flags().StringArrayVar(&o.identities, "identity", nil, "age identity file (as age-keygen writes) to decrypt an encrypted snapshot; repeat for more")
	if tmpDir {
		cmd.Flags().StringVar(&o.tmpDir, "tmp-dir", "", "where the plaintext DB is copied while it is checked; needs room for the whole DB (default: $TMPDIR or /tmp)")
	}
}

// verify runs snapshot.Verify with the flags' identities and temp dir.
func (o *snapshotReadOptions) verify(path string) (snapshot.Status, error) {
	ids, err := readIdentities(o.identities)
	if err != nil {
		return snapshot.Status{}, err
	}
	dir := o.tmpDir
	if dir == "" {
		dir = os.TempDir()
	}
	st, err := snapshot.Verify(path, ids, dir)
	return st, identityHint(err, o.identities)
}

func newSnapshotStatusCommand() *cobra.Command {
	var (
		o      snapshotReadOptions
		format string
	)
	cmd := &cobra.Command{
		Use:   "status FILE",
		Short: "Show a snapshot's hash, revision, total keys, total size and version, as etcdutl does",
		Long: `Show a snapshot's hash, revision, total keys, total size and storage
version, in etcdutl snapshot status's table or JSON. The whole file is
checked first (sha256 trailer, bbolt consistency), as snapshot verify does;
no daemon is needed.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.CheckFormat(format); err != nil {
				return usageError{err}
			}
			st, err := o.verify(args[0])
			if err != nil {
				return err
			}
			return output.SnapshotStatus(cmd.OutOrStdout(), format, st)
		},
	}
	o.bind(cmd, true)
	cmd.Flags().StringVarP(&format, "write-out", "w", output.Table, "output format: table or json")
	return cmd
}

func newSnapshotVerifyCommand() *cobra.Command {
	var o snapshotReadOptions
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a snapshot fully: decrypt, decompress, sha256 trailer, bbolt consistency",
		Long: `Check a snapshot fully: decrypt and decompress it, check etcd's sha256
trailer, open the DB with bbolt and run its consistency check. Exit 0 only
if it is good. A DB without etcd's trailer (a copy of member/snap/db) is
refused: nothing proves it is whole. No daemon is needed.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := o.verify(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is good: revision %d, %d keys, hash %s\n",
				args[0], st.Revision, st.TotalKeys, output.SnapshotHash(st.Hash))
			return nil
		},
	}
	o.bind(cmd, true)
	return cmd
}

type snapshotRestoreOptions struct {
	read   snapshotReadOptions
	config string
	// Flag values; those not given come from --config, else etcdutl's
	// defaults.
	name           string
	dataDir        string
	walDir         string
	initialCluster string
	token          string
	peerURLs       []string
	bumpRevision   uint64
	markCompacted  bool
	skipHashCheck  bool
}

func newSnapshotRestoreCommand() *cobra.Command {
	var o snapshotRestoreOptions
	cmd := &cobra.Command{
		Use:   "restore FILE [--data-dir DIR]",
		Short: "Make a new member's data dir from a snapshot, as etcdutl snapshot restore does",
		Long: `Make a new member's data dir from a snapshot, as etcdutl snapshot restore
does, with etcdutl's flags and defaults; no daemon is needed.

The snapshot is decrypted and decompressed as it is copied and its sha256
trailer checked in the same pass. The data dir must be missing or empty and
the WAL dir missing; on any failure everything written is removed. Every
member of the new cluster restores the same snapshot with the same
--initial-cluster and --initial-cluster-token, each with its own --name and
--initial-advertise-peer-urls, then starts with initial-cluster-state new.

--config FILE takes the name, data dir, WAL dir, initial cluster, token and
advertised peer URLs from an etcdvisor config (etcd.*); flags override it.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.markCompacted != (o.bumpRevision > 0) {
				return usageError{errors.New("snapshot restore: --bump-revision and --mark-compacted go together")}
			}
			ro, err := o.resolve(cmd.Flags())
			if err != nil {
				return err
			}
			ro.SnapshotPath = args[0]
			if ro.Identities, err = readIdentities(o.read.identities); err != nil {
				return err
			}
			bar := progress.New(os.Stderr, "restoring "+filepath.Base(args[0]))
			defer bar.Stop()
			if bar.Active() {
				bar.SetTotal(restoreTotal(args[0], ro.Identities))
				db := filepath.Join(ro.DataDir, "member", "snap", "db")
				bar.Poll(func() int64 {
					if fi, err := os.Stat(db); err == nil {
						return fi.Size()
					}
					return 0
				})
			}
			err = snapshot.Restore(ro)
			bar.Stop()
			if err != nil {
				return restoreHint(identityHint(err, o.read.identities), ro.DataDir)
			}
			return output.SnapshotRestored(cmd.OutOrStdout(), ro)
		},
	}
	o.bind(cmd)
	return cmd
}

func (o *snapshotRestoreOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "etcdvisor config to take name, data dir, WAL dir, initial cluster, token and peer URLs from")
	f.StringVar(&o.name, "name", "default", "the new member's name")
	f.StringVar(&o.dataDir, "data-dir", "", "data dir to create; must be missing or empty (default: NAME.etcd)")
	f.StringVar(&o.walDir, "wal-dir", "", "WAL dir to create; must be missing (default: DATA-DIR/member/wal)")
	f.StringVar(&o.initialCluster, "initial-cluster", "", "the new cluster, NAME=PEER-URL,... (default: NAME=first --initial-advertise-peer-urls, i.e. default=http://localhost:2380)")
	f.StringVar(&o.token, "initial-cluster-token", "etcd-cluster", "the new cluster's token; with --initial-cluster it makes the member and cluster IDs")
	f.StringSliceVar(&o.peerURLs, "initial-advertise-peer-urls", []string{"http://localhost:2380"}, "the new member's peer URLs")
	f.Uint64Var(&o.bumpRevision, "bump-revision", 0, "raise the revision by this much, so clients never see it go back; needs --mark-compacted")
	f.BoolVar(&o.markCompacted, "mark-compacted", false, "mark the bumped revision compacted, so watchers of lost revisions are told; needs --bump-revision")
	f.BoolVar(&o.skipHashCheck, "skip-hash-check", false, "accept a DB without etcd's sha256 trailer, such as a copy of member/snap/db")
	o.read.bind(cmd, false)
}

// resolve layers the restore settings: etcdutl's defaults, then --config's
// etcd section, then the flags given.
func (o *snapshotRestoreOptions) resolve(flags *pflag.FlagSet) (snapshot.RestoreOptions, error) {
	ro := snapshot.RestoreOptions{
		Name:                o.name,
		InitialClusterToken: o.token,
		PeerURLs:            o.peerURLs,
		BumpRevision:        o.bumpRevision,
		MarkCompacted:       o.markCompacted,
		SkipHashCheck:       o.skipHashCheck,
		// etcdvisor's own files may share the data dir; etcd's may not.
		Keep: []string{config.LockName, config.SocketName, config.SnapshotDirName},
	}
	if o.config != "" {
		cfg, err := config.Load(o.config)
		if err != nil {
			return ro, err
		}
		e := cfg.Etcd
		ro.Name, ro.DataDir, ro.WalDir = e.Name, e.DataDir, e.WalDir
		ro.InitialCluster, ro.InitialClusterToken = e.InitialCluster, e.InitialClusterToken
		ro.PeerURLs = e.InitialAdvertisePeerURLs
	}
	for flag, set := range map[string]func(){
		"name":                        func() { ro.Name = o.name },
		"data-dir":                    func() { ro.DataDir = o.dataDir },
		"wal-dir":                     func() { ro.WalDir = o.walDir },
		"initial-cluster":             func() { ro.InitialCluster = o.initialCluster },
		"initial-cluster-token":       func() { ro.InitialClusterToken = o.token },
		"initial-advertise-peer-urls": func() { ro.PeerURLs = o.peerURLs },
	} {
		if flags.Changed(flag) {
			set()
		}
	}
	// The defaults snapshot.Restore would pick, made here so the summary
	// can say what was made.
	if len(ro.PeerURLs) == 0 {
		return ro, usageError{errors.New("snapshot restore: --initial-advertise-peer-urls must name at least one URL")}
	}
	if ro.InitialCluster == "" {
		ro.InitialCluster = ro.Name + "=" + ro.PeerURLs[0]
	}
	if ro.DataDir == "" {
		ro.DataDir = ro.Name + ".etcd"
	}
	return ro, nil
}

// restoreTotal is the DB size a restore of path writes, for the progress
// line: from the manifest beside it, or the size of a plain file; 0 when
// unknown.
func restoreTotal(path string, ids []age.Identity) int64 {
	if m, err := snapshot.ReadManifest(path); err == nil && m.DBSize > 0 {
		return m.DBSize
	}
	r, err := snapshot.Open(path, ids)
	if err != nil {
		return 0
	}
	defer r.Close()
	if sr, ok := r.(*snapshot.Reader); !ok || sr.Form.Compressed || sr.Form.Encrypted {
		return 0
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readIdentities reads every --identity file.
func readIdentities(paths []string) ([]age.Identity, error) {
	var ids []age.Identity
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("--identity %s: %w", p, err)
		}
		got, err := age.ParseIdentities(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("--identity %s: %w (expected an age identity file, as age-keygen writes)", p, err)
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// identityHint names the flag that decrypts, or the files that did not.
func identityHint(err error, identities []string) error {
	switch {
	case errors.Is(err, snapshot.ErrNoIdentity):
		return fmt.Errorf("%w: give the identity file with --identity FILE", err)
	case errors.Is(err, snapshot.ErrWrongIdentity):
		return fmt.Errorf("%w (tried --identity %s)", err, strings.Join(identities, ", "))
	}
	return err
}

// restoreHint says how to get past a data dir in the way, as restore
// never removes anything itself.
func restoreHint(err error, dataDir string) error {
	if err != nil && strings.Contains(err.Error(), "is not empty") {
		return fmt.Errorf("%w: stop whatever uses it and move it aside first (mv %s %s.old); restore never writes over a member's data", err, dataDir, dataDir)
	}
	return err
}
