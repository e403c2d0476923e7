package snapshot

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

func writeFakeSnapshot(t *testing.T, dir, name string, created time.Time, withManifest bool) {
	t.Helper()
	file := name + ".db.zst"
	if err := os.WriteFile(filepath.Join(dir, file), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if withManifest {
		b, _ := json.Marshal(Manifest{File: file, CreatedAt: created})
		os.WriteFile(filepath.Join(dir, name+".manifest.json"), b, 0o600)
	}
}

func TestListShowsOnlySnapshotsWithManifestsNewestFirst(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	writeFakeSnapshot(t, dir, "old", base.Add(-2*time.Hour), true)
	writeFakeSnapshot(t, dir, "new", base, true)
	writeFakeSnapshot(t, dir, "orphan", base.Add(time.Hour), false)
	got, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].File != "new.db.zst" || got[1].File != "old.db.zst" {
		t.Fatalf("got %+v, want new then old", got)
	}
	if err := Remove(got[1]); err != nil {
		t.Fatal(err)
	}
	if after, _ := List(dir); len(after) != 1 {
		t.Fatalf("after Remove: %+v", after)
	}
	if _, err := os.Stat(filepath.Join(dir, "old.manifest.json")); !os.IsNotExist(err) {
		t.Errorf("manifest left after Remove: %v", err)
	}
}

func TestCleanStaleRemovesWhatACrashedSaveLeft(t *testing.T) {
	dir := t.TempDir()
	writeFakeSnapshot(t, dir, "good", time.Now(), true)
	for _, n := range []string{"etcd-a-1.part", ".etcd-a-1.plain-123", ".etcd-a-1.manifest.json.tmp-9"} {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600)
	}
	removed, err := CleanStale(dir)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(removed)
	if len(removed) != 3 {
		t.Errorf("removed %v, want the three leftovers", removed)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 2 {
		t.Errorf("left %v, want the good snapshot and its manifest", left)
	}
}
