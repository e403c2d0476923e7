package output

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/etcdvisor/etcdvisor/internal/snapshot"
)

// SnapshotList is the daemon's answer to GET /v1/snapshots: its snapshot
// dir and the good snapshots in it, newest first.
type SnapshotList struct {
	Dir       string            `json:"dir"`
	Snapshots []snapshot.Listed `json:"snapshots"`
}

// SnapshotSaved writes what a save produced in format f.
func SnapshotSaved(w io.Writer, f string, s snapshot.Listed) error {
	if f == JSON {
		return WriteJSON(w, s)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("PATH", s.Path)
	row("SIZE", fmt.Sprintf("%s (DB %s, %s, %s)", humanize.IBytes(uint64(s.Size)), humanize.IBytes(uint64(s.DBSize)),
		compression(s.Manifest), encryptedTo(s.Manifest)))
	row("REVISION", fmt.Sprint(s.Revision))
	row("TOTAL KEYS", fmt.Sprint(s.TotalKeys))
	row("HASH", SnapshotHash(s.Hash))
	row("SHA256", s.SHA256)
	row("TOOK", s.Duration)
	return tw.Flush()
}

// Snapshots writes the daemon's snapshot list in format f.
func Snapshots(w io.Writer, f string, l SnapshotList) error {
	if f == JSON {
		if l.Snapshots == nil {
			l.Snapshots = []snapshot.Listed{} // [] rather than null for scripts
		}
		return WriteJSON(w, l)
	}
	if len(l.Snapshots) == 0 {
		_, err := fmt.Fprintf(w, "no snapshots in %s\n", l.Dir)
		return err
	}
	fmt.Fprintf(w, "snapshots in %s, newest first:\n", l.Dir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tCREATED\tSIZE\tDB SIZE\tREVISION\tKEYS\tHASH\tCOMPRESSION\tENCRYPTED")
	for _, s := range l.Snapshots {
		fmt.Fprintf(tw, "%s\t%s (%s)\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", s.File,
			s.CreatedAt.UTC().Format(time.RFC3339), humanize.Time(s.CreatedAt),
			humanize.IBytes(uint64(s.Size)), humanize.IBytes(uint64(s.DBSize)),
			s.Revision, s.TotalKeys, SnapshotHash(s.Hash), s.Compression, encryption(s.Manifest))
	}
	return tw.Flush()
}

// SnapshotStatus writes st as `etcdutl snapshot status` does: in a
// bordered table, or as one line of compact JSON with etcdutl's keys, so
// the output of both tools compares byte for byte.
func SnapshotStatus(w io.Writer, f string, st snapshot.Status) error {
	if f == JSON {
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	return borderedTable(w,
		[]string{"HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE", "VERSION"},
		[][]string{{
			SnapshotHash(st.Hash),
			fmt.Sprint(st.Revision),
			fmt.Sprint(st.TotalKeys),
			// SI units, as etcdutl prints them ("20 kB").
			humanize.Bytes(uint64(st.TotalSize)),
			st.Version,
		}})
}

// SnapshotRestored says what a restore made and how to start the member.
func SnapshotRestored(w io.Writer, o snapshot.RestoreOptions) error {
	fmt.Fprintf(w, "restored %s into %s\n", o.SnapshotPath, o.DataDir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	row("name", o.Name)
	row("initial-cluster", o.InitialCluster)
	row("initial-cluster-token", o.InitialClusterToken)
	row("initial-advertise-peer-urls", strings.Join(o.PeerURLs, ","))
	if o.WalDir != "" {
		row("wal-dir", o.WalDir)
	}
	if o.BumpRevision > 0 {
		row("bump-revision", fmt.Sprintf("%d (marked compacted)", o.BumpRevision))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "Start the member on this data dir with this name and these peer URLs.")
	if strings.Contains(o.InitialCluster, ",") {
		fmt.Fprintln(w, "Restore the same snapshot for every other member, with the same initial-cluster and token and its own name and peer URLs.")
	}
	return nil
}

// SnapshotHash prints a snapshot's hash as etcdutl does: lowercase hex,
// not zero-padded.
func SnapshotHash(h uint32) string { return fmt.Sprintf("%x", h) }

// borderedTable draws the table etcdutl's table printer draws, in ASCII:
// a border around every cell, headers centered, cells aligned right.
func borderedTable(w io.Writer, hdr []string, rows [][]string) error {
	widths := make([]int, len(hdr))
	for i, h := range hdr {
		widths[i] = len(h)
		for _, r := range rows {
			widths[i] = max(widths[i], len(r[i]))
		}
	}
	var b strings.Builder
	rule := func() {
		for _, wd := range widths {
			b.WriteString("+" + strings.Repeat("-", wd+2))
		}
		b.WriteString("+\n")
	}
	line := func(cells []string, pad func(s string, width int) string) {
		for i, c := range cells {
			b.WriteString("| " + pad(c, widths[i]) + " ")
		}
		b.WriteString("|\n")
	}
	center := func(s string, width int) string {
		gap := width - len(s)
		return strings.Repeat(" ", gap/2) + s + strings.Repeat(" ", gap-gap/2)
	}
	right := func(s string, width int) string { return strings.Repeat(" ", width-len(s)) + s }
	rule()
	line(hdr, center)
	rule()
	for _, r := range rows {
		line(r, right)
	}
	rule()
	_, err := io.WriteString(w, b.String())
	return err
}

func compression(m snapshot.Manifest) string {
	if m.Compression == "" || m.Compression == "none" {
		return "not compressed"
	}
	return m.Compression
}

func encryption(m snapshot.Manifest) string {
	if len(m.Recipients) == 0 {
		return "no"
	}
	return fmt.Sprintf("yes (%s)", recipients(len(m.Recipients)))
}

func encryptedTo(m snapshot.Manifest) string {
	if len(m.Recipients) == 0 {
		return "not encrypted"
	}
	return "encrypted to " + recipients(len(m.Recipients))
}

func recipients(n int) string {
	if n == 1 {
		return "1 recipient"
	}
	return fmt.Sprintf("%d recipients", n)
}
