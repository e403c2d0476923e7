package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/output"
	"github.com/etcdvisor/etcdvisor/internal/pki"
)

const pkiDay = 24 * time.Hour

func newPKICommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Make and inspect the CA and certificates for etcd's TLS",
		Long: `Make and inspect the x509 certificates that encrypt etcd's peer and client
traffic and let only holders of a certificate from the cluster's CA in.

A whole cluster at once:   etcdvisor pki bootstrap --members a=10.0.0.1,b=10.0.0.2,c=10.0.0.3 --out pki
One certificate:           etcdvisor pki issue peer peer --ca pki --ip 10.0.0.4 --out pki/d/pki`,
	}
	cmd.AddCommand(newPKICACommand(), newPKIIssueCommand(), newPKIInspectCommand(), newPKIBootstrapCommand())
	return cmd
}

type pkiCAOptions struct {
	out   string
	cn    string
	days  int
	force bool
}

func newPKICACommand() *cobra.Command {
	var o pkiCAOptions
	cmd := &cobra.Command{
		Use:   "ca --out DIR",
		Short: "Make a CA: DIR/ca.crt and DIR/ca.key",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.out == "" {
				return usageError{errors.New("pki ca: --out DIR is required")}
			}
			if o.days <= 0 {
				return usageError{fmt.Errorf("pki ca: --days %d: expected a positive number of days", o.days)}
			}
			ca, certPath, keyPath, err := pki.CreateCA(o.out, o.cn, time.Duration(o.days)*pkiDay, o.force)
			if err != nil {
				return pkiForceHint(err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "CA %q, valid until %s:\n", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "  %s\n  %s  (keep it offline: whoever has it can make certificates etcd trusts)\n", certPath, keyPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "directory to write ca.crt and ca.key to")
	f.StringVar(&o.cn, "cn", pki.CACommonName, "the CA's common name")
	f.IntVar(&o.days, "days", 3650, "validity in days")
	f.BoolVar(&o.force, "force", false, "overwrite an existing ca.crt and ca.key")
	return cmd
}

type pkiIssueOptions struct {
	ca    string
	out   string
	hosts []string
	ips   []net.IP
	days  int
	force bool
}

func newPKIIssueCommand() *cobra.Command {
	var o pkiIssueOptions
	cmd := &cobra.Command{
		Use:   "issue server|peer|client NAME --ca DIR",
		Short: "Issue a certificate signed by the CA in DIR: NAME.crt and NAME.key",
		Long: `Issue a certificate signed by the CA in --ca DIR (ca.crt and ca.key) and write
NAME.crt and NAME.key to --out (default: the CA's directory). NAME is also
the certificate's common name.

  server  etcd's client listener (server and client auth); needs --host or --ip
  peer    raft between members (server and client auth); needs --host or --ip
  client  kube-apiserver, etcdctl, etcdvisor (client auth)`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := pki.ParseKind(args[0])
			if err != nil {
				return usageError{fmt.Errorf("pki issue: %w", err)}
			}
			if o.ca == "" {
				return usageError{errors.New("pki issue: --ca DIR is required (the directory with ca.crt and ca.key)")}
			}
			if o.days <= 0 {
				return usageError{fmt.Errorf("pki issue: --days %d: expected a positive number of days", o.days)}
			}
			if kind != pki.Client && len(o.hosts) == 0 && len(o.ips) == 0 {
				return usageError{fmt.Errorf("pki issue %s: give the addresses clients dial it at with --host or --ip", kind)}
			}
			if o.out == "" {
				o.out = o.ca
			}
			req := pki.Request{Kind: kind, CommonName: args[1], DNSNames: o.hosts, IPs: o.ips, Validity: time.Duration(o.days) * pkiDay}
			kp, certPath, keyPath, err := pki.IssueFiles(o.ca, o.out, args[1], req, o.force)
			if err != nil {
				return pkiForceHint(err)
			}
			var ips []string
			for _, ip := range kp.Cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s certificate %q, valid until %s:\n", kind, kp.Cert.Subject.CommonName, kp.Cert.NotAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "  %s\n  %s\n", certPath, keyPath)
			fmt.Fprintf(w, "  DNS names: %s\n  IPs:       %s\n", pkiListOrNone(kp.Cert.DNSNames), pkiListOrNone(ips))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ca, "ca", "", "directory with the CA's ca.crt and ca.key")
	f.StringVar(&o.out, "out", "", "directory to write NAME.crt and NAME.key to (default: the --ca directory)")
	f.StringSliceVar(&o.hosts, "host", nil, "DNS name the certificate covers; repeat or separate with commas (an IP here counts as --ip)")
	f.IPSliceVar(&o.ips, "ip", nil, "IP address the certificate covers; repeat or separate with commas")
	f.IntVar(&o.days, "days", 365, "validity in days")
	f.BoolVar(&o.force, "force", false, "overwrite an existing NAME.crt and NAME.key")
	return cmd
}

func newPKIInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Show a certificate: subject, SANs, issuer, usages, validity, days left",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.CheckFormat(format); err != nil {
				return usageError{err}
			}
			info, err := pki.Inspect(args[0], time.Now())
			if err != nil {
				return err
			}
			if format == output.JSON {
				return output.WriteJSON(cmd.OutOrStdout(), info)
			}
			return info.WriteTable(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&format, "write-out", "w", output.Table, "output format: table or json")
	return cmd
}

type pkiBootstrapOptions struct {
	members    []string
	out        string
	token      string
	installDir string
	days       int
	ports      [3]int
}

func newPKIBootstrapCommand() *cobra.Command {
	var o pkiBootstrapOptions
	cmd := &cobra.Command{
		Use:   "bootstrap --members a=IP,b=IP,c=IP --out DIR",
		Short: "Make the CA, certificates and configs for a whole new cluster",
		Long: `Make everything a new TLS cluster needs, in DIR: the CA, kube-apiserver's
client pair, and for each member a directory with its etcdvisor.yaml and
pki/ (server, peer and etcdvisor client pairs) to copy to the member's host.
DIR must not exist or be empty.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.out == "" {
				return usageError{errors.New("pki bootstrap: --out DIR is required")}
			}
			if o.days <= 0 {
				return usageError{fmt.Errorf("pki bootstrap: --days %d: expected a positive number of days", o.days)}
			}
			members, err := pki.ParseMembers(o.members)
			if err == nil && len(members) == 0 {
				err = errors.New("--members is required, like a=10.0.0.1,b=10.0.0.2,c=10.0.0.3")
			}
			if err != nil {
				return usageError{fmt.Errorf("pki bootstrap: %w", err)}
			}
			return pki.Bootstrap(pki.BootstrapOptions{
				Dir:         o.out,
				Members:     members,
				Token:       o.token,
				InstallDir:  o.installDir,
				ClientPort:  o.ports[0],
				PeerPort:    o.ports[1],
				MetricsPort: o.ports[2],
				Validity:    time.Duration(o.days) * pkiDay,
				Out:         cmd.OutOrStdout(),
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.members, "members", nil, "the members as name=host (an IP or DNS name); repeat or separate with commas")
	f.StringVar(&o.out, "out", "", "directory to write to; must not exist or be empty")
	f.StringVar(&o.token, "token", "", "initial-cluster-token (default: etcd-cluster-<8 random hex digits>)")
	f.StringVar(&o.installDir, "install-dir", pki.DefaultInstallDir,
		"where each member's directory will live on its host; "+pki.MemberPlaceholder+" stands for the member's name")
	f.IntVar(&o.days, "days", 365, "validity of the certificates in days (the CA gets 10 years)")
	f.IntVar(&o.ports[0], "client-port", 2379, "etcd's client port")
	f.IntVar(&o.ports[1], "peer-port", 2380, "etcd's peer port")
	f.IntVar(&o.ports[2], "metrics-port", 2381, "the metrics listener's port")
	return cmd
}

func pkiListOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// pkiForceHint names the flag that overwrites existing files.
func pkiForceHint(err error) error {
	if errors.Is(err, pki.ErrExists) {
		return fmt.Errorf("%w (--force replaces it)", err)
	}
	return err
}
