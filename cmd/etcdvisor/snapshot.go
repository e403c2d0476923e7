package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/etcdvisor/etcdvisor/internal/output"
	"github.com/etcdvisor/etcdvisor/internal/progress"
	"github.com/etcdvisor/etcdvisor/internal/snapshot"
)

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
	member snapshot.MemberOptions
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
			if o.member.Endpoint == "" {
				return o.viaDaemon(cmd)
			}
			return o.direct(cmd, args[0])
		},
	}
	o.client.bind(cmd)
	f := cmd.Flags()
	f.StringVarP(&o.format, "write-out", "w", output.Table, "output format: table or json")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	f.StringVar(&o.member.Endpoint, "endpoints", "", "save straight from the member at this client URL, without the daemon (one URL)")
	f.StringVar(&o.member.CACert, "cacert", "", "with --endpoints: CA bundle to verify the member's certificate")
	f.StringVar(&o.member.Cert, "cert", "", "with --endpoints: client certificate")
	f.StringVar(&o.member.Key, "key", "", "with --endpoints: client certificate's key")
	f.BoolVar(&o.member.Compress, "compress", false, "with --endpoints: compress with zstd (appends .zst)")
	f.StringArrayVar(&o.member.Recipients, "recipient", nil, "with --endpoints: encrypt to this age public key (age1...; appends .age); repeat for more")
	f.StringVar(&o.member.RateLimit, "rate-limit", "0", "with --endpoints: read at most this many bytes per second from etcd, like 100MiB; 0: no limit")
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
	if strings.TrimSpace(o.member.Endpoint) == "" || strings.ContainsAny(o.member.Endpoint, ", ") {
		return fmt.Errorf("--endpoints %q: expected one client URL, like https://10.0.0.1:2379", o.member.Endpoint)
	}
	if len(args) != 1 {
		return fmt.Errorf("--endpoints needs FILE, the snapshot to write; got %d arguments", len(args))
	}
	m := o.member
	m.File = args[0]
	return m.Check()
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
	o.member.File = file
	_, name, _ := snapshot.SaveTarget(file, o.member.Compress, len(o.member.Recipients) > 0) // checked
	bar := progress.New(os.Stderr, "saving "+name+" from "+o.member.Endpoint)
	defer bar.Stop()
	o.member.Progress = barProgress(bar)
	ctx, cancel := interruptible(o.timeout)
	defer cancel()
	// The stream arrives as 32 KiB gRPC messages that are garbage at once;
	// at the default GOGC the heap doubles on them. Half that keeps a save
	// of any size near 45 MiB resident, for a few percent of CPU; the soft
	// limit makes the collector work harder only if the heap nears it.
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(40 << 20)
	saved, err := snapshot.SaveFromMember(ctx, o.member)
	bar.Stop()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s; nothing was kept: %w", stopReason(ctx, o.timeout), err)
		}
		return err
	}
	return output.SnapshotSaved(cmd.OutOrStdout(), o.format, saved)
}

// barProgress feeds bar from the Progress callback of a snapshot option.
func barProgress(bar *progress.Bar) func(done, total int64) {
	return func(done, total int64) {
		bar.SetTotal(total)
		bar.Set(done)
	}
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

// ageIdentities reads every --identity file.
func (o *snapshotReadOptions) ageIdentities() ([]age.Identity, error) {
	ids, err := snapshot.ReadIdentities(o.identities)
	if err != nil {
		return nil, fmt.Errorf("--identity %w", err) // the error starts with the file
	}
	return ids, nil
}

// verify runs snapshot.Verify with the flags' identities and temp dir.
func (o *snapshotReadOptions) verify(path string) (snapshot.Status, error) {
	ids, err := o.ageIdentities()
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
	// The flags' values; those not given come from --config, else from the
	// flags' defaults, which are etcdutl's.
	restore snapshot.RestoreOptions
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
the WAL dir missing; on any failure, or Ctrl-C, everything written is
removed. Every member of the new cluster restores the same snapshot with the
same --initial-cluster and --initial-cluster-token, each with its own --name
and --initial-advertise-peer-urls, then starts with initial-cluster-state
new.

--config FILE takes the name, data dir, WAL dir, initial cluster, token and
advertised peer URLs from an etcdvisor config (etcd.*); flags override it.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, args[0]) },
	}
	o.bind(cmd)
	return cmd
}

func (o *snapshotRestoreOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	r := &o.restore
	f.StringVar(&o.config, "config", "", "etcdvisor config to take name, data dir, WAL dir, initial cluster, token and peer URLs from")
	f.StringVar(&r.Name, "name", "default", "the new member's name")
	f.StringVar(&r.DataDir, "data-dir", "", "data dir to create; must be missing or empty (default: NAME.etcd)")
	f.StringVar(&r.WalDir, "wal-dir", "", "WAL dir to create; must be missing (default: DATA-DIR/member/wal)")
	f.StringVar(&r.InitialCluster, "initial-cluster", "", "the new cluster, NAME=PEER-URL,... (default: NAME=first --initial-advertise-peer-urls, i.e. default=http://localhost:2380)")
	f.StringVar(&r.InitialClusterToken, "initial-cluster-token", "etcd-cluster", "the new cluster's token; with --initial-cluster it makes the member and cluster IDs")
	f.StringSliceVar(&r.PeerURLs, "initial-advertise-peer-urls", []string{"http://localhost:2380"}, "the new member's peer URLs")
	f.Uint64Var(&r.BumpRevision, "bump-revision", 0, "raise the revision by this much, so clients never see it go back; needs --mark-compacted")
	f.BoolVar(&r.MarkCompacted, "mark-compacted", false, "mark the bumped revision compacted, so watchers of lost revisions are told; needs --bump-revision")
	f.BoolVar(&r.SkipHashCheck, "skip-hash-check", false, "accept a DB without etcd's sha256 trailer, such as a copy of member/snap/db")
	o.read.bind(cmd, false)
}

// resolve layers the restore settings: etcdutl's defaults, then --config's
// etcd section, then the flags given.
func (o *snapshotRestoreOptions) resolve(flags *pflag.FlagSet) (snapshot.RestoreOptions, error) {
	if o.restore.MarkCompacted != (o.restore.BumpRevision > 0) {
		return o.restore, usageError{errors.New("snapshot restore: --bump-revision and --mark-compacted go together")}
	}
	ro, err := snapshot.LayerRestoreOptions(o.restore, o.config, flags.Changed)
	if errors.Is(err, snapshot.ErrNoPeerURLs) {
		return ro, usageError{err}
	}
	return ro, err
}

func (o *snapshotRestoreOptions) run(cmd *cobra.Command, file string) error {
	ro, err := o.resolve(cmd.Flags())
	if err != nil {
		return err
	}
	ro.SnapshotPath = file
	if ro.Identities, err = o.read.ageIdentities(); err != nil {
		return err
	}
	bar := progress.New(os.Stderr, "restoring "+filepath.Base(file))
	defer bar.Stop()
	ro.Progress = barProgress(bar)
	// Ctrl-C or SIGTERM stops the restore, which then removes what it wrote.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = snapshot.Restore(ctx, ro)
	bar.Stop()
	switch {
	case err == nil:
		return output.SnapshotRestored(cmd.OutOrStdout(), ro)
	case ctx.Err() != nil && !errors.Is(err, snapshot.ErrNotRemoved):
		return fmt.Errorf("interrupted; nothing was left in %s: %w", ro.DataDir, err)
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", err)
	}
	return identityHint(err, o.read.identities)
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
