package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/health/diskcheck"
	"github.com/etcdvisor/etcdvisor/internal/output"
	"github.com/etcdvisor/etcdvisor/internal/progress"
)

// errDiskTooSlow is returned, after the result is printed, when a disk
// fails the check, so scripts can tell from the exit status.
var errDiskTooSlow = errors.New("disk too slow for etcd")

func newCheckCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that this node suits etcd",
	}
	cmd.AddCommand(newCheckDiskCommand())
	return cmd
}

type checkDiskOptions struct {
	size      sizeFlag
	blockSize int
	format    string
}

func newCheckDiskCommand() *cobra.Command {
	o := checkDiskOptions{size: diskcheck.DefaultSize}
	cmd := &cobra.Command{
		Use:   "disk [DIR]",
		Short: "Measure whether the disk under DIR is fast enough for etcd's WAL, as etcd's fio test does",
		Long: `Measure whether the disk under DIR (default: the current directory) is
fast enough for etcd's WAL. It does what the fio test in etcd's docs does,

  fio --rw=write --ioengine=sync --fdatasync=1 --directory=DIR --size=22m --bs=2300 --name=etcd

sequential writes of --bs bytes, each followed by fdatasync, until --size
bytes are written, and judges the 99th percentile of the fdatasync
latencies against etcd's target of 10ms. Run it in the directory etcd's
WAL will be in (or will be on the same disk as), with the load the node
will have. Its file is removed afterwards.

It exits non-zero when the disk fails the check.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.MaximumNArgs(1)(cmd, args); err != nil {
				return usageError{fmt.Errorf("%s: %w (usage: %s)", cmd.CommandPath(), err, cmd.UseLine())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return usageError{fmt.Errorf("%s: %w (usage: %s)", cmd.CommandPath(), err, cmd.UseLine())}
			}
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			return o.run(cmd.OutOrStdout(), dir)
		},
	}
	f := cmd.Flags()
	f.Var(&o.size, "size", "bytes to write in all, like 22MiB (what fio's --size=22m means; 22m here is 22MB) or 256KiB")
	f.IntVar(&o.blockSize, "bs", diskcheck.DefaultBlockSize, "bytes of each write, each followed by fdatasync")
	f.StringVarP(&o.format, "write-out", "w", output.Table, "output format: table or json")
	return cmd
}

func (o *checkDiskOptions) check() error {
	if err := output.CheckFormat(o.format); err != nil {
		return err
	}
	if o.blockSize <= 0 {
		return fmt.Errorf("--bs %d: expected a positive number of bytes", o.blockSize)
	}
	if int64(o.size) < int64(o.blockSize) {
		return fmt.Errorf("--size %s is less than one --bs block of %d bytes", o.size, o.blockSize)
	}
	return nil
}

func (o *checkDiskOptions) run(w io.Writer, dir string) error {
	// Ctrl-C ends the check cleanly, so its file is removed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bar := progress.New(os.Stderr, "checking the disk under "+dir)
	defer bar.Stop()
	r, err := diskcheck.Run(ctx, dir, diskcheck.Options{
		Size:      int64(o.size),
		BlockSize: o.blockSize,
		Progress: func(written, total int64) {
			bar.SetTotal(total)
			bar.Set(written)
		},
	})
	bar.Stop()
	if err != nil {
		return err
	}
	if err := writeDiskCheck(w, o.format, r); err != nil {
		return err
	}
	if !r.Pass {
		return fmt.Errorf("%w: %s", errDiskTooSlow, r.Verdict)
	}
	return nil
}

// diskCheckJSON is a check's result for scripts: seconds as numbers.
type diskCheckJSON struct {
	Dir              string  `json:"dir"`
	Size             int64   `json:"size"`
	BlockSize        int     `json:"blockSize"`
	Count            int     `json:"count"`
	P50Seconds       float64 `json:"p50Seconds"`
	P90Seconds       float64 `json:"p90Seconds"`
	P99Seconds       float64 `json:"p99Seconds"`
	MaxSeconds       float64 `json:"maxSeconds"`
	TookSeconds      float64 `json:"tookSeconds"`
	TargetP99Seconds float64 `json:"targetP99Seconds"`
	Pass             bool    `json:"pass"`
	Verdict          string  `json:"verdict"`
}

func writeDiskCheck(w io.Writer, format string, r diskcheck.Result) error {
	if format == output.JSON {
		return output.WriteJSON(w, diskCheckJSON{
			Dir: r.Dir, Size: r.Written, BlockSize: r.BlockSize, Count: r.Count,
			P50Seconds: r.P50.Seconds(), P90Seconds: r.P90.Seconds(), P99Seconds: r.P99.Seconds(),
			MaxSeconds: r.Max.Seconds(), TookSeconds: r.Took.Seconds(), TargetP99Seconds: r.Target.Seconds(),
			Pass: r.Pass, Verdict: r.Verdict,
		})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	short := diskcheck.Short
	row("DIR", r.Dir)
	row("WRITES", fmt.Sprintf("%d of %d bytes (%s), fdatasync after each", r.Count, r.BlockSize, humanize.IBytes(uint64(r.Written))))
	row("FDATASYNC", fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s", short(r.P50), short(r.P90), short(r.P99), short(r.Max)))
	row("TOOK", short(r.Took).String())
	row("VERDICT", r.Verdict)
	return tw.Flush()
}

// sizeFlag is a byte count flag, parsed as config.ByteSize is in YAML:
// 22MiB, 256KiB, or a number of bytes.
type sizeFlag config.ByteSize

func (s *sizeFlag) Set(v string) error {
	n, err := humanize.ParseBytes(v)
	if err != nil || n > 1<<62 {
		return fmt.Errorf("expected a size like 22MiB or a number of bytes")
	}
	*s = sizeFlag(n)
	return nil
}

func (s sizeFlag) String() string { return config.ByteSize(s).String() }

func (s *sizeFlag) Type() string { return "size" }
