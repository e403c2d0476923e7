// Package output renders control-socket documents for people (tables)
// and scripts (JSON).
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

// Formats accepted by -w.
const (
	Table = "table"
	JSON  = "json"
)

// CheckFormat returns an error naming the flag for an unknown format.
func CheckFormat(f string) error {
	if f != Table && f != JSON {
		return fmt.Errorf("-w %q: expected table or json", f)
	}
	return nil
}

// WriteJSON writes v indented, for people reading JSON too.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Status writes st in format f.
func Status(w io.Writer, f string, st api.Status) error {
	if f == JSON {
		return WriteJSON(w, st)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("NAME", st.Name)
	row("PHASE", st.Phase)
	if st.Error != "" {
		row("ERROR", st.Error)
	}
	row("MEMBER ID", orDash(st.MemberID))
	row("CLUSTER ID", orDash(st.ClusterID))
	row("LEADER", leader(st))
	row("RAFT TERM", fmt.Sprint(st.RaftTerm))
	row("RAFT INDEX", fmt.Sprintf("%d (applied %d)", st.RaftIndex, st.RaftAppliedIndex))
	row("REVISION", fmt.Sprint(st.Revision))
	row("DB SIZE", fmt.Sprintf("%s (in use %s)", humanize.IBytes(uint64(st.DBSize)), humanize.IBytes(uint64(st.DBSizeInUse))))
	row("ETCD VERSION", st.EtcdVersion)
	row("ETCDVISOR VERSION", st.EtcdvisorVersion)
	row("UP", time.Since(st.StartedAt).Truncate(time.Second).String())
	row("DATA DIR", st.DataDir)
	for _, e := range st.Errors {
		row("MEMBER ERROR", e)
	}
	if l := st.LastSnapshot; l != nil {
		row("LAST SNAPSHOT", fmt.Sprintf("%s (%s ago, revision %d, %s)", l.Path,
			time.Since(l.CreatedAt).Truncate(time.Second), l.Revision, humanize.IBytes(uint64(l.Size))))
	} else {
		row("LAST SNAPSHOT", "none")
	}
	if st.LastSnapshotError != "" {
		row("SNAPSHOT ERROR", st.LastSnapshotError)
	}
	if h := st.Health; h != nil {
		row("HEALTH", fmt.Sprintf("%s (since %s ago)", h.State, time.Since(h.Since).Truncate(time.Second)))
		for _, r := range h.Reasons {
			row("HEALTH REASON", r.Text)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Members) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPEER URLS\tCLIENT URLS\tLEARNER\tLEADER")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%t\n", m.ID, orDash(m.Name),
			strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","), m.IsLearner, m.IsLeader)
	}
	return tw.Flush()
}

// Members writes the member list with each member's health in format f.
func Members(w io.Writer, f string, ml api.MemberList) error {
	if f == JSON {
		return WriteJSON(w, ml)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPEER URLS\tCLIENT URLS\tLEARNER\tLEADER\tHEALTH\tETCDVISOR\tRAFT TERM\tRAFT INDEX\tDB SIZE")
	for _, m := range ml.Members {
		health := "healthy"
		if !m.Healthy {
			health = "unhealthy: " + m.Error
		}
		visor := "none"
		if m.UnreachableSeconds > 0 {
			visor = fmt.Sprintf("none; unreachable for %s", time.Duration(m.UnreachableSeconds*float64(time.Second)).Round(time.Second))
		}
		if e := m.Etcdvisor; e != nil {
			visor = e.Health
			if len(e.Reasons) > 0 {
				visor += ": " + e.Reasons[0]
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%t\t%s\t%s\t%d\t%d\t%s\n", m.ID, orDash(m.Name),
			strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","), m.IsLearner, m.IsLeader,
			health, visor, m.RaftTerm, m.RaftIndex, humanize.IBytes(uint64(m.DBSize)))
	}
	return tw.Flush()
}

func leader(st api.Status) string {
	switch {
	case st.LeaderID == "":
		return "none"
	case st.IsLeader:
		return st.LeaderID + " (this member)"
	}
	return st.LeaderID
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
