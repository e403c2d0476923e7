package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestAReadOnlySnapshotDirFailsTheSaveAndKeepsTheOlderSnapshot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount and remount a tmpfs")
	}
	m := newMember(t, "ro")
	dir := filepath.Join(shortDir(t), "snapshots")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, dir, "16m")
	m.top = fmt.Sprintf("snapshot:\n  dir: %s\n", dir)
	cfg := m.writeConfig(t)
	p := startDaemon(t, []string{"--config", cfg})
	p.waitReady()
	older := saveSnapshot(t, cfg)

	// Root writes through any mode bits; a read-only mount it cannot.
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("mount", "-o", "remount,rw", dir).Run() })

	_, errOut, code := runCLI(t, "snapshot", "save", "--config", cfg)
	if code == 0 || !strings.Contains(errOut, "read-only file system") {
		t.Errorf("snapshot save into a read-only dir: exit %d, stderr %q; want a failure naming the read-only file system", code, errOut)
	}
	list := snapshotList(t, cfg)
	if len(list) != 1 || list[0].File != older.File {
		t.Errorf("snapshot list: %v, want only %s", listedNames(list), older.File)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("etcdvisor exited %d", code)
	}
}

func TestAFailingBeforeHookStopsTheSnapshotAndAFailingAfterHookKeepsIt(t *testing.T) {
	m := newMember(t, "hooks")
	dir := filepath.Join(shortDir(t), "snapshots")
	script := filepath.Join(shortDir(t), "hook.sh")
	// The hook fails while the file "fail" exists beside it, and says so.
	os.WriteFile(script, []byte("#!/bin/sh\nif [ -e \"$(dirname \"$0\")/fail\" ]; then echo \"refusing $ETCDVISOR_SNAPSHOT_NAME\"; exit 3; fi\n"), 0o755)
	failFlag := filepath.Join(filepath.Dir(script), "fail")

	for _, tc := range []struct {
		name, hook  string
		wantSaved   bool
		wantMessage string
	}{
		{"before", "before", false, "snapshot.hooks.before"},
		{"after", "after", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.top = fmt.Sprintf("snapshot:\n  dir: %s\n  hooks:\n    %s: [%s]\n", dir, tc.hook, script)
			cfg := m.writeConfig(t)
			p := startDaemon(t, []string{"--config", cfg})
			p.waitReady()
			before := len(snapshotList(t, cfg))
			os.WriteFile(failFlag, nil, 0o644)
			defer os.Remove(failFlag)

			_, errOut, code := runCLI(t, "snapshot", "save", "--config", cfg)
			saved := len(snapshotList(t, cfg)) == before+1
			if saved != tc.wantSaved {
				t.Errorf("a failing %s hook: snapshot kept %v, want %v (exit %d, %s)", tc.hook, saved, tc.wantSaved, code, errOut)
			}
			if tc.wantMessage != "" && (code == 0 || !strings.Contains(errOut, tc.wantMessage) || !strings.Contains(errOut, "refusing")) {
				t.Errorf("a failing %s hook: exit %d, stderr %q; want a failure naming the hook and its output", tc.hook, code, errOut)
			}
			if tc.wantSaved && code != 0 {
				t.Errorf("a failing after hook failed the save: exit %d %s", code, errOut)
			}
			_, body := httpGet(t, "http://"+m.metricsAddr+"/metrics")
			if want := fmt.Sprintf(`etcdvisor_snapshot_hook_failures_total{hook=%q} 1`, tc.hook); !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
			if code := p.stop(); code != 0 {
				t.Errorf("etcdvisor exited %d", code)
			}
		})
	}
}
