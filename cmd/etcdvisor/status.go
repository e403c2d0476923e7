package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/endpoints"
	"github.com/etcdvisor/etcdvisor/internal/health"
	"github.com/etcdvisor/etcdvisor/internal/output"
)

// requestTimeout bounds one CLI request to the daemon.
const requestTimeout = 10 * time.Second

func newStatusCommand() *cobra.Command {
	var (
		o      clientOptions
		format string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the local member: phase, IDs, leader, raft term and index, DB size, members",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.CheckFormat(format); err != nil {
				return usageError{err}
			}
			var st api.Status
			if err := o.get("/v1/status", &st); err != nil {
				return err
			}
			return output.Status(cmd.OutOrStdout(), format, st)
		},
	}
	o.bind(cmd)
	cmd.Flags().StringVarP(&format, "write-out", "w", output.Table, "output format: table or json")
	return cmd
}

func newHealthCommand() *cobra.Command {
	var (
		o      clientOptions
		format string
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Show the starvation watch's verdict on the local member: ok, degraded or critical, with reasons and figures",
		Long: `Show the starvation watch's verdict on the local member: ok, degraded or
critical, why, and the figures it rests on (fsync probe, etcd's WAL fsync
and backend commit latency, IO/CPU/memory pressure, disk, network, round
trip to each peer). -w json prints a document with a top-level "state"
and "reasons" list, kept stable for scripts. Exits 0 whatever the state.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.CheckFormat(format); err != nil {
				return usageError{err}
			}
			var r health.Report
			if err := o.get("/v1/health", &r); err != nil {
				return err
			}
			return output.Health(cmd.OutOrStdout(), format, r)
		},
	}
	o.bind(cmd)
	cmd.Flags().StringVarP(&format, "write-out", "w", output.Table, "output format: table or json")
	return cmd
}

func newEtcdServersCommand() *cobra.Command {
	var (
		o      clientOptions
		format string
	)
	cmd := &cobra.Command{
		Use:   "etcd-servers",
		Short: "Print where etcd is for kube-apiserver (--etcd-servers) or a load balancer, from the live member list",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			render, ok := map[string]func([]api.Member) (string, error){
				"etcd-servers": endpoints.EtcdServers,
				"haproxy":      endpoints.HAProxy,
			}[format]
			if !ok {
				return usageError{fmt.Errorf("--format %q: expected etcd-servers or haproxy", format)}
			}
			var st api.Status
			if err := o.get("/v1/status", &st); err != nil {
				return err
			}
			if st.Error != "" && len(st.Members) == 0 {
				return fmt.Errorf("no member list: %s", st.Error)
			}
			out, err := render(st.Members)
			if err != nil {
				return err
			}
			if format == "etcd-servers" {
				out += "\n"
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), out)
			return err
		},
	}
	o.bind(cmd)
	cmd.Flags().StringVar(&format, "format", "etcd-servers", "etcd-servers (kube-apiserver's flag value) or haproxy (a backend stanza)")
	return cmd
}
