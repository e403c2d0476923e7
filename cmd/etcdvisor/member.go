package main

import (
	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/output"
)

func newMemberCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "Inspect the cluster's members",
	}
	var (
		o      clientOptions
		format string
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List members with their URLs, role, and health as seen from this host",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.CheckFormat(format); err != nil {
				return usageError{err}
			}
			var ml api.MemberList
			if err := o.get("/v1/members", &ml); err != nil {
				return err
			}
			return output.Members(cmd.OutOrStdout(), format, ml)
		},
	}
	o.bind(list)
	list.Flags().StringVarP(&format, "write-out", "w", output.Table, "output format: table or json")
	cmd.AddCommand(list)
	return cmd
}
