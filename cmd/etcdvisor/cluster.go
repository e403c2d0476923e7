package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
	"github.com/etcdvisor/etcdvisor/internal/output"
)

func newClusterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Cluster-wide operations the etcdvisors carry out together",
	}
	cmd.AddCommand(newClusterStatusCommand(), newRollingRestartCommand())
	return cmd
}

func newClusterStatusCommand() *cobra.Command {
	var (
		o      clientOptions
		format string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the rolling operation, journalled joins and the membership lock's holder",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.CheckFormat(format); err != nil {
				return usageError{err}
			}
			var st cluster.Status
			if err := o.get("/v1/cluster", &st); err != nil {
				return err
			}
			return output.Cluster(cmd.OutOrStdout(), format, st)
		},
	}
	o.bind(cmd)
	cmd.Flags().StringVarP(&format, "write-out", "w", output.Table, "output format: table or json")
	return cmd
}

func newRollingRestartCommand() *cobra.Command {
	var (
		o     clientOptions
		abort bool
		wait  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rolling-restart",
		Short: "Restart every member's etcdvisor in turn, followers first, the leader last, each only while the cluster is healthy",
		Long: `Restart every member's etcdvisor in turn.

The plan is written to the cluster; each etcdvisor takes its own turn when
the whole cluster is healthy and the member before it serves again: it moves
leadership away if it leads, then exits with status 75, on which systemd
starts it again (with whatever binary is installed now: this is how an
upgrade rolls out). Followers go first and the leader last. Progress shows
in "etcdvisor cluster status"; --abort stops after the step in progress.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r cluster.Rolling
			if err := o.post("/v1/cluster/rolling-restart", api.RollingRequest{Abort: abort}, &r); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if abort {
				fmt.Fprintf(w, "Rolling restart %s aborted; done: %v.\n", r.ID, r.Done)
				return nil
			}
			fmt.Fprintf(w, "Rolling restart %s started; order: %v.\n", r.ID, r.Order)
			if wait <= 0 {
				return nil
			}
			return o.waitRolling(cmd, r.ID, wait)
		},
	}
	o.bind(cmd)
	cmd.Flags().BoolVar(&abort, "abort", false, "abort the running rolling restart after the step in progress")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the rolling restart to finish")
	return cmd
}

// waitRolling polls the cluster status until the operation id ends. The
// local daemon restarts on its own turn, so failed polls are retried.
func (o *clientOptions) waitRolling(cmd *cobra.Command, id string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	last := ""
	for ; time.Now().Before(deadline); time.Sleep(time.Second) {
		c, err := o.client()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		var st cluster.Status
		err = c.Get(ctx, "/v1/cluster", &st)
		cancel()
		if err != nil || st.Rolling == nil || st.Rolling.ID != id {
			continue
		}
		r := st.Rolling
		if line := fmt.Sprintf("done %v, restarting %s", r.Done, orDash(r.Current)); line != last {
			fmt.Fprintln(cmd.OutOrStdout(), line)
			last = line
		}
		switch r.Phase {
		case cluster.RollingDone:
			fmt.Fprintln(cmd.OutOrStdout(), "Rolling restart done.")
			return nil
		case cluster.RollingAborted:
			return fmt.Errorf("rolling restart %s aborted: %s", id, r.Error)
		}
	}
	return fmt.Errorf("rolling restart %s did not finish within %s; see etcdvisor cluster status", id, limit)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
