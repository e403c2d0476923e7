package output

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/health"
)

// Health writes the starvation watch's report in format f: the JSON is the
// report itself (top-level "state" and "reasons", stable for scripts).
func Health(w io.Writer, f string, r health.Report) error {
	if f == JSON {
		return WriteJSON(w, r)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("STATE", fmt.Sprintf("%s (since %s, %s ago)", r.State, r.Since.Format(time.RFC3339), time.Since(r.Since).Truncate(time.Second)))
	if len(r.Reasons) == 0 {
		row("REASONS", "none")
	}
	for _, reason := range r.Reasons {
		row("REASON", fmt.Sprintf("[%s] %s", reason.State, reason.Text))
	}
	healthFigures(row, r.Figures)
	return tw.Flush()
}

func healthFigures(row func(k, v string), f health.Figures) {
	ms := func(s health.Seconds) string { return time.Duration(s).Round(10 * time.Microsecond).String() }
	row("WINDOW", ms(f.Window))
	row("FSYNC PROBE P99", fmt.Sprintf("%s (in flight %s)", ms(f.FsyncProbeP99), ms(f.FsyncProbeInFlight)))
	row("WAL FSYNC P99", ms(f.WALFsyncP99))
	row("BACKEND COMMIT P99", ms(f.BackendCommitP99))
	row("ETCD", fmt.Sprintf("leader %t, is leader %t, %.0f heartbeat failures, %.0f slow applies, %.0f leader changes",
		f.HasLeader, f.IsLeader, f.HeartbeatFailures, f.SlowApplies, f.LeaderChanges))
	row("PRESSURE", fmt.Sprintf("io full %.0f%%, cpu some %.0f%%, memory full %.0f%%", f.IOPressure*100, f.CPUPressure*100, f.MemoryPressure*100))
	if f.DiskDevice != "" {
		row("DISK", fmt.Sprintf("%s: %.0f%% busy, write latency %s", f.DiskDevice, f.DiskUtilization*100, ms(f.DiskWriteLatency)))
	}
	row("NETWORK", fmt.Sprintf("%.1f drops/s, %.1f TCP retransmits/s", f.NetDropsPerSec, f.TCPRetransPerSec))
	peers := make([]string, 0, len(f.PeerRTTP99))
	for p := range f.PeerRTTP99 {
		peers = append(peers, p)
	}
	slices.Sort(peers)
	for _, p := range peers {
		row("PEER RTT P99", fmt.Sprintf("%s %s", p, ms(f.PeerRTTP99[p])))
	}
	for _, u := range f.Unavailable {
		row("UNAVAILABLE", u)
	}
}
