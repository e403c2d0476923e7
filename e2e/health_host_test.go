package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/health"
)

// TestCPUStarvationIsSeen runs more busy processes than there are cores
// beside a member: the kernel's CPU pressure (PSI "some") rises and the
// watch reports it. The hogs end by themselves after hogFor.
func TestCPUStarvationIsSeen(t *testing.T) {
	if _, err := os.Stat("/proc/pressure/cpu"); err != nil {
		t.Skipf("this kernel has no PSI: %v", err)
	}
	const hogFor = 40 * time.Second
	m := newMember(t, "cpu")
	m.top = "health:\n  recover-after: 2s\n  cpu-pressure-degraded: 0.3\n"
	cfg := m.writeConfig(t)
	p := startDaemon(t, []string{"--config", cfg})
	p.waitReady()
	waitHealth(t, cfg, "a first report", func(r health.Report) bool { return !r.At.IsZero() })

	hogs := startCPUHogs(t, 4, hogFor)
	r := waitHealth(t, cfg, "a cpu-pressure reason", func(r health.Report) bool { return hasReason(r, "cpu-pressure") })
	if r.Figures.CPUPressure < 0.3 {
		t.Errorf("cpu pressure figure %.2f with a cpu-pressure reason (limit 0.3)", r.Figures.CPUPressure)
	}
	t.Logf("under %d hogs: %s %v", len(hogs), r.State, reasonTexts(r))
	stopCPUHogs(hogs)
	waitHealth(t, cfg, "the cpu-pressure reason gone", func(r health.Report) bool { return !hasReason(r, "cpu-pressure") })
}

// startCPUHogs starts n busy loops that stop by themselves after d (and
// are killed at cleanup, whichever comes first).
func startCPUHogs(t *testing.T, n int, d time.Duration) []*exec.Cmd {
	t.Helper()
	var hogs []*exec.Cmd
	for range n {
		cmd := exec.Command("timeout", fmt.Sprint(int(d.Seconds())), "sh", "-c", "while :; do :; done")
		// Its own process group: killing timeout alone would leave the
		// loop running.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start CPU hog: %v", err)
		}
		hogs = append(hogs, cmd)
	}
	t.Cleanup(func() { stopCPUHogs(hogs) })
	return hogs
}

func stopCPUHogs(hogs []*exec.Cmd) {
	for _, h := range hogs {
		if h.ProcessState == nil {
			syscall.Kill(-h.Process.Pid, syscall.SIGKILL)
			h.Wait()
		}
	}
}

// TestPartitionedMemberIsSeen cuts member c off from a and b with nftables
// drop rules on loopback: nothing addressed to c's address arrives, and
// nothing from it. a and b report c as not answering (degraded) and keep
// serving. The cut is one-way: on loopback c's own connections leave from
// 127.0.0.1, so c still reaches a and b, and etcd's peer streams that c
// dialled keep bringing it the leader's heartbeats; c rightly sees nothing
// wrong. (A two-way cut needs c in its own network namespace.) The rules
// live in a set whose elements time out by themselves, and the table is
// deleted at cleanup.
func TestPartitionedMemberIsSeen(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skipf("nftables (nft) is not installed: %v", err)
	}
	c := NewCluster(t, WithMembers(3), WithMemberSetup(func(i int, m *member) { m.top = healthYAML }))
	cfg := func(i int) string { return c.Members[i].configPath() }
	for i := range 3 {
		waitHealth(t, cfg(i), "ok before the partition", func(r health.Report) bool { return r.State == health.OK && len(r.Figures.PeerRTTP99) == 2 })
	}
	ip := func(i int) string { return fmt.Sprintf("127.0.0.%d", i+1) }
	table := fmt.Sprintf("etcdvisor_e2e_%d", os.Getpid())
	partition(t, table, ip(2), []string{ip(0), ip(1)}, 60*time.Second)

	ra := waitHealth(t, cfg(0), "c reported as not answering", func(r health.Report) bool {
		return hasReasonText(r, "peer c has not answered")
	})
	// Judged on the network reasons alone: the host's disk, which all
	// three members share, may make them critical at any moment on a
	// busy machine, and that says nothing about the partition.
	for _, x := range ra.Reasons {
		if (x.Signal == "peer-rtt" || x.Signal == "network") && x.State == health.Critical {
			t.Errorf("a, which still reaches b, is critical for the network: %v", reasonTexts(ra))
		}
	}
	rb := waitHealth(t, cfg(1), "b: c not answering", func(r health.Report) bool {
		return hasReasonText(r, "peer c has not answered")
	})
	t.Logf("a: %s %v; b: %s %v", ra.State, reasonTexts(ra), rb.State, reasonTexts(rb))
	// a and b still have a quorum and serve writes.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := c.Client(0, 1).Put(ctx, "/registry/during-partition", "ok"); err != nil {
		t.Fatalf("put through a and b during the partition: %v", err)
	}

	nft(t, "delete", "table", "inet", table)
	waitHealth(t, cfg(0), "a: c answering again", func(r health.Report) bool { return !hasReason(r, "peer-rtt") })
}

func hasReasonText(r health.Report, s string) bool {
	for _, x := range r.Reasons {
		if strings.Contains(x.Text, s) {
			return true
		}
	}
	return false
}

// partition drops loopback traffic between ip and each of others, both
// ways, for at most d: the set's elements expire by themselves.
func partition(t *testing.T, table, ip string, others []string, d time.Duration) {
	t.Helper()
	nft(t, "add", "table", "inet", table)
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", table).Run() })
	nft(t, "add", "set", "inet", table, "cut", "{ type ipv4_addr . ipv4_addr; flags timeout; }")
	nft(t, "add", "chain", "inet", table, "input", "{ type filter hook input priority 0; policy accept; }")
	nft(t, "add", "rule", "inet", table, "input", "ip saddr . ip daddr @cut drop")
	var elems []string
	for _, o := range others {
		elems = append(elems, fmt.Sprintf("%s . %s timeout %ds", ip, o, int(d.Seconds())), fmt.Sprintf("%s . %s timeout %ds", o, ip, int(d.Seconds())))
	}
	nft(t, "add", "element", "inet", table, "cut", "{ "+strings.Join(elems, ", ")+" }")
}

func nft(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("nft", args...).CombinedOutput(); err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
