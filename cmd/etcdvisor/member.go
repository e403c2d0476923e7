package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/logging"
	"github.com/etcdvisor/etcdvisor/internal/output"
	"github.com/etcdvisor/etcdvisor/internal/supervisor"
)

// changeTimeout bounds a membership change asked of the daemon: waiting
// for the lock, moving leadership, and the change itself.
const changeTimeout = 5 * time.Minute

func newMemberCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "Inspect and change the cluster's members, one safe step at a time",
	}
	cmd.AddCommand(newMemberListCommand(), newMemberRemoveCommand(), newMemberAddCommand(), newMemberJoinCommand(), newMemberAbortJoinCommand())
	return cmd
}

func newMemberListCommand() *cobra.Command {
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
	return list
}

func newMemberRemoveCommand() *cobra.Command {
	var (
		o     clientOptions
		force bool
	)
	cmd := &cobra.Command{
		Use:   "remove NAME|ID",
		Short: "Remove a member under the membership lock, if the remaining healthy voters keep a quorum",
		Long: `Remove a member under the cluster's membership lock.

A voter is removed only if the voters that remain, counting only the
healthy ones, still form a quorum; nothing overrides that. Removing a
healthy voter needs --force: the cluster then tolerates one fewer failure
until a replacement joins. A leader hands leadership over first.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var got api.MemberHealth
			if err := o.post("/v1/members/remove", api.RemoveRequest{Name: args[0], Force: force}, &got); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed member %s (%s) from the cluster.\n", got.Name, got.ID)
			return nil
		},
	}
	o.bind(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "remove a member even though it is healthy (never when that would lose quorum)")
	return cmd
}

func newMemberAddCommand() *cobra.Command {
	var (
		o        clientOptions
		peerURLs []string
		format   string
	)
	cmd := &cobra.Command{
		Use:   "add NAME --peer-urls URL[,URL]",
		Short: "Add a member as a learner and print how it must start (prefer join on the new host)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.CheckFormat(format); err != nil {
				return usageError{err}
			}
			if len(peerURLs) == 0 {
				return usageError{fmt.Errorf("--peer-urls is required: the new member's advertised peer URLs")}
			}
			var got api.AddResponse
			if err := o.post("/v1/members", api.AddRequest{Name: args[0], PeerURLs: peerURLs}, &got); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if format == output.JSON {
				return json.NewEncoder(w).Encode(got)
			}
			fmt.Fprintf(w, "Added %s as learner %s. Start it with:\n\n", args[0], got.ID)
			fmt.Fprintf(w, "etcd:\n  name: %s\n  initial-cluster: %q\n  initial-cluster-state: %s\n\n", args[0], got.InitialCluster, got.InitialClusterState)
			fmt.Fprintf(w, "and promote it once it has caught up (etcdctl member promote %s).\n", got.ID)
			return nil
		},
	}
	o.bind(cmd)
	cmd.Flags().StringSliceVar(&peerURLs, "peer-urls", nil, "the new member's advertised peer URLs")
	cmd.Flags().StringVarP(&format, "write-out", "w", output.Table, "output format: table or json")
	return cmd
}

func newMemberJoinCommand() *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "join --endpoints URL[,URL] [--replaces NAME]",
		Short: "Run this host's member, joining it to a running cluster first (the daemon, with join settings)",
		Long: `Run this host's etcdvisor, joining its member to a running cluster.

This is "etcdvisor run" with the config's join section set from flags: under
the cluster's membership lock it checks the cluster and this host, takes a
snapshot, removes the member named by --replaces, adds this member as a
learner, starts it, and promotes it once it has caught up. Then it keeps
running as the daemon. Under systemd, put the same settings in the config's
join section instead.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("endpoints") {
				return usageError{fmt.Errorf("--endpoints is required: client URLs of the running cluster")}
			}
			return o.run(cmd)
		},
	}
	o.bind(cmd)
	f := cmd.Flags()
	f.StringSliceVar(&o.joinEndpoints, "endpoints", nil, "client URLs of the running cluster's members")
	f.StringVar(&o.replaces, "replaces", "", "a failed member to remove first")
	f.BoolVar(&o.force, "force", false, "let --replaces name a healthy member")
	return cmd
}

func newMemberAbortJoinCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "abort-join",
		Short: "Undo this host's unfinished join: remove its learner and move its data aside (etcdvisor stopped)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Find(configPath)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			lg, err := logging.New("warn", "console")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), changeTimeout)
			defer cancel()
			rec, err := supervisor.AbortJoin(ctx, cfg, lg)
			if err != nil {
				return err
			}
			msg := fmt.Sprintf("Aborted the join of %s", rec.Name)
			if rec.LearnerID != "" {
				msg += fmt.Sprintf("; learner %s removed", rec.LearnerID)
			}
			if rec.RemovedID != "" {
				msg += fmt.Sprintf("; member %s (%s), removed by the join, stays removed", rec.Replaces, rec.RemovedID)
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg+".")
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "config file (YAML) of the joining member")
	return cmd
}
