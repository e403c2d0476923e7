package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/api"
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
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			var st api.Status
			if err := o.get(ctx, "/v1/status", &st); err != nil {
				return err
			}
			return output.Status(cmd.OutOrStdout(), format, st)
		},
	}
	o.bind(cmd)
	cmd.Flags().StringVarP(&format, "write-out", "w", output.Table, "output format: table or json")
	return cmd
}

func newEtcdServersCommand() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "etcd-servers",
		Short: "Print the value for kube-apiserver's --etcd-servers from the live member list",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			var st api.Status
			if err := o.get(ctx, "/v1/status", &st); err != nil {
				return err
			}
			servers, err := output.EtcdServers(st)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), servers)
			return nil
		},
	}
	o.bind(cmd)
	return cmd
}
