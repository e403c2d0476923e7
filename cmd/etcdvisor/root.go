package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/control"
	"github.com/etcdvisor/etcdvisor/internal/supervisor"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks bad flags or arguments.
type usageError struct{ error }

// Execute runs the command line and returns the process exit code.
func Execute() int {
	root := newRootCommand()
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	if errors.Is(err, supervisor.ErrRestart) {
		// A planned restart: systemd starts the unit again on this status.
		fmt.Fprintln(os.Stderr, "etcdvisor: exiting to be restarted (rolling restart)")
		return supervisor.ExitRestart
	}
	fmt.Fprintln(os.Stderr, "etcdvisor:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "etcdvisor",
		Short: "Supervise the local etcd member of a Kubernetes control plane",
		Long: `etcdvisor runs the local etcd member and watches over it.

Start a single member with no config:   etcdvisor run
See how it is doing:                    etcdvisor status`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newRunCommand(),
		newClusterCommand(),
		newStatusCommand(),
		newHealthCommand(),
		newEtcdServersCommand(),
		newMemberCommand(),
		newConfigCommand(),
		newPKICommand(),
		newSnapshotCommand(),
		newCheckCommand(),
		newVersionCommand(),
	)
	return root
}

// clientOptions are the flags every command that talks to the daemon
// takes to find its socket the way `run` chose it.
type clientOptions struct {
	socket  string
	config  string
	dataDir string
}

func (o *clientOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.socket, "socket", "", "control socket path (default: from --config or --data-dir; env "+config.EnvSocket+")")
	f.StringVar(&o.config, "config", "", "the daemon's config file, to find its socket (env "+config.EnvConfig+")")
	f.StringVar(&o.dataDir, "data-dir", "", "the daemon's data dir, to find its socket")
}

func (o *clientOptions) client() (*control.Client, error) {
	path, err := config.FindSocket(o.socket, o.config, o.dataDir)
	if err != nil {
		return nil, err
	}
	return control.NewClient(path), nil
}

// get fetches one document from the daemon, within requestTimeout.
func (o *clientOptions) get(path string, out any) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	return c.Get(ctx, path, out)
}

// post asks the daemon for a change, within changeTimeout.
func (o *clientOptions) post(path string, in, out any) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), changeTimeout)
	defer cancel()
	return c.Post(ctx, path, in, out)
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w (usage: %s)", cmd.CommandPath(), err, cmd.UseLine())}
		}
		return nil
	}
}
