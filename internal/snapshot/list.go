package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Listed is a good snapshot on disk: its manifest and full path.
type Listed struct {
	Manifest
	Path string `json:"path"`
}

// List returns the good snapshots in dir, newest first. A snapshot counts
// only with its manifest beside it, and Save writes the manifest last, so
// a snapshot cut short by a crash is never listed.
func List(dir string) ([]Listed, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []Listed
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".manifest.json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		var m Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			continue // not ours, or damaged: not a good snapshot
		}
		path := filepath.Join(dir, m.File)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		out = append(out, Listed{Manifest: m, Path: path})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// Remove deletes a snapshot and its manifest: the manifest first, so a
// crash in between leaves an unlisted file rather than a listed ghost.
func Remove(s Listed) error {
	if err := os.Remove(ManifestPath(s.Path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove snapshot %s: %w", s.File, err)
	}
	if err := os.Remove(s.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove snapshot %s: %w", s.File, err)
	}
	return nil
}

// CleanStale removes what a save cut short leaves behind: .part files,
// plaintext copies and half-written manifests. Call it only while no save
// runs (at daemon start).
func CleanStale(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		n := e.Name()
		stale := strings.HasSuffix(n, ".part") ||
			strings.HasPrefix(n, ".") && (strings.Contains(n, ".plain-") || strings.Contains(n, ".manifest.json.tmp-"))
		if stale {
			if err := os.Remove(filepath.Join(dir, n)); err == nil {
				removed = append(removed, n)
			}
		}
	}
	return removed, nil
}
