package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/version"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the versions of etcdvisor, the etcd it embeds, and Go",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "etcdvisor %s\netcd %s\n%s\n", version.Version, version.Etcd, version.Go)
			return nil
		},
	}
}
