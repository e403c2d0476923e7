package output

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/cluster"
)

// Cluster writes what runs under the reserved prefix: the rolling
// operation, the journalled joins, and the membership lock's holder.
func Cluster(w io.Writer, f string, st cluster.Status) error {
	if f == JSON {
		return WriteJSON(w, st)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	if st.Lock != nil {
		row("LOCK", fmt.Sprintf("held by %s (revision %d)", st.Lock.Holder, st.Lock.Revision))
	} else {
		row("LOCK", "free")
	}
	if r := st.Rolling; r != nil {
		line := fmt.Sprintf("%s %s, started %s by %s; done %d of %d (%s)", r.Phase, r.ID, r.StartedAt.Format(time.RFC3339), r.RequestedBy,
			len(r.Done), len(r.Order), strings.Join(r.Done, ", "))
		if r.Current != "" {
			line += fmt.Sprintf("; restarting %s since %s", r.Current, r.CurrentFrom.Format(time.RFC3339))
		}
		if next := r.Next(); next != "" && r.Current == "" && r.Phase == cluster.RollingRunning {
			line += "; next " + next
		}
		if r.Error != "" {
			line += "; " + r.Error
		}
		row("ROLLING RESTART", line)
	} else {
		row("ROLLING RESTART", "none")
	}
	for _, j := range st.Joins {
		line := fmt.Sprintf("%s: %s at %s", j.Name, j.Step, j.UpdatedAt.Format(time.RFC3339))
		if j.Replaces != "" {
			line += ", replacing " + j.Replaces
		}
		if j.Error != "" {
			line += "; " + j.Error
		}
		row("JOIN", line)
	}
	return tw.Flush()
}
