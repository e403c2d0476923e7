package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/config"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check a config file or print the default one",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Check FILE and list every problem; exit non-zero if there are any",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err == nil {
				err = cfg.Validate()
			}
			if err != nil {
				return fmt.Errorf("%s is not valid:\n%w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is valid\n", args[0])
			return nil
		},
	}, &cobra.Command{
		Use:   "default",
		Short: "Print a complete, commented default config",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(config.Default().Commented())
			return err
		},
	})
	return cmd
}
