package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/logging"
	"github.com/etcdvisor/etcdvisor/internal/supervisor"
)

type runOptions struct {
	config    string
	dataDir   string
	name      string
	logLevel  string
	logFormat string

	// member join's flags, over the config's join section.
	joinEndpoints []string
	replaces      string
	force         bool
}

func newRunCommand() *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the local etcd member under supervision (the daemon)",
		Long: `Run the local etcd member under supervision.

With no config file, run starts a single embedded member on 127.0.0.1
(client 2379, peer 2380, metrics 2381) with its data in ./etcdvisor-data
(as root, /var/lib/etcdvisor). With --config, or $` + config.EnvConfig + `, or ` + config.DefaultFile + `
when it exists, it runs from that file; flags override it.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	o.bind(cmd)
	return cmd
}

func (o *runOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "config file (YAML)")
	f.StringVar(&o.dataDir, "data-dir", "", "etcd's data dir; overrides etcd.data-dir")
	f.StringVar(&o.name, "name", "", "member name; overrides etcd.name")
	f.StringVar(&o.logLevel, "log-level", "", "debug, info, warn or error; overrides log.level")
	f.StringVar(&o.logFormat, "log-format", "", "json or console; overrides log.format")
}

func (o *runOptions) run(cmd *cobra.Command) error {
	cfg, err := config.Find(o.config)
	if err != nil {
		return err
	}
	flags := cmd.Flags()
	override := func(flag, path string, dst *string, v string) {
		if flags.Changed(flag) {
			*dst = v
			cfg.SetByFlag(path, flag)
		}
	}
	override("data-dir", "etcd.data-dir", &cfg.Etcd.DataDir, o.dataDir)
	override("name", "etcd.name", &cfg.Etcd.Name, o.name)
	override("log-level", "log.level", &cfg.Log.Level, o.logLevel)
	override("log-format", "log.format", &cfg.Log.Format, o.logFormat)
	override("replaces", "join.replaces", &cfg.Join.Replaces, o.replaces)
	if flags.Changed("endpoints") {
		cfg.Join.Endpoints = o.joinEndpoints
		cfg.SetByFlag("join.endpoints", "endpoints")
	}
	if flags.Changed("force") {
		cfg.Join.Force = o.force
		cfg.SetByFlag("join.force", "force")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	lg, err := logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	defer lg.Sync()
	return supervisor.Run(context.Background(), cfg, lg)
}
