package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdvisor/etcdvisor/internal/control"
	"github.com/etcdvisor/etcdvisor/internal/snapshot"
)

func TestScheduledSnapshotsUnderWriteLoadAreEncryptedVerifiedAndThinnedByRetention(t *testing.T) {
	identity, recipient := newAgeKey(t)
	m := newMember(t, "sched")
	// The after hook records every snapshot taken, so the test knows how
	// many the schedule produced whatever retention removed since.
	taken := filepath.Join(m.dir, "taken.log")
	section := func(schedule string) string {
		return fmt.Sprintf(`snapshot:
  schedule: "%s"
  jitter: 0s
  compress: true
  recipients: [%s]
  retention:
    keep: 3
  hooks:
    after: [/bin/sh, -c, 'echo "$ETCDVISOR_SNAPSHOT" >> %s']
`, schedule, recipient, taken)
	}
	m.top = section("@every 2s")
	cfg := m.writeConfig(t)
	p := startDaemon(t, []string{"--config", cfg})
	p.waitReady()

	stopWriter := startWriter(t, newClient(t, m.clientURL), 2000)
	// A catch-up snapshot at ready, then one every 2s: by the fifth,
	// retention (keep 3) has removed the oldest.
	logged := waitForLines(t, taken, 5, p)

	list := snapshotList(t, cfg)
	if len(list) < 3 || len(list) > 4 {
		// Retention keeps 3; a snapshot saved but not yet followed by its
		// retention pass makes a fourth for a moment.
		t.Errorf("snapshot list has %d snapshots after %d were taken, want 3 (4 while one is being finished)", len(list), len(logged))
	}
	// Snapshot N's retention pass has run once N+1 is logged: all but the
	// newest four logged are gone.
	for _, gone := range logged[:len(logged)-4] {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("retention kept %s, older than the newest 4 of %d snapshots (keep 3): %v", gone, len(logged), err)
		}
		if _, err := os.Stat(snapshot.ManifestPath(gone)); !os.IsNotExist(err) {
			t.Errorf("retention removed a snapshot but kept its manifest %s: %v", snapshot.ManifestPath(gone), err)
		}
	}
	st := statusJSON(t, "--config", cfg)
	if st.LastSnapshot == nil || st.LastSnapshotError != "" {
		t.Errorf("status: lastSnapshot %+v, lastSnapshotError %q; want the newest snapshot and no error", st.LastSnapshot, st.LastSnapshotError)
	} else if !strings.HasSuffix(st.LastSnapshot.Path, ".db.zst.age") || st.LastSnapshot.Revision < 2 || st.LastSnapshot.Size == 0 {
		t.Errorf("status: lastSnapshot %+v, want a compressed, encrypted snapshot with a revision and a size", st.LastSnapshot)
	}
	families := scrapeMetrics(t, m.metricsAddr)
	if got := gaugeValue(families["etcdvisor_snapshot_last_attempt_success"]); got != 1 {
		t.Errorf("etcdvisor_snapshot_last_attempt_success = %v, want 1", got)
	}
	if got := gaugeValue(families["etcdvisor_snapshots_kept"]); got != 3 {
		t.Errorf("etcdvisor_snapshots_kept = %v, want 3 (retention keep 3)", got)
	}
	if got := gaugeValue(families["etcdvisor_snapshot_last_revision"]); got < 2 {
		t.Errorf("etcdvisor_snapshot_last_revision = %v, want the revision of a snapshot under load", got)
	}

	// Stop the schedule so the set on disk holds still, then check every
	// snapshot the daemon lists.
	if code := p.stop(); code != 0 {
		t.Fatalf("etcdvisor exited %d", code)
	}
	if puts := stopWriter(); puts == 0 {
		t.Fatal("the writer made no puts")
	}
	logged = strings.Fields(mustRead(t, taken))
	m.top = section("")
	m.writeConfig(t)
	p = startDaemon(t, []string{"--config", cfg})
	p.waitReady()
	list = snapshotList(t, cfg)
	if len(list) < 3 || len(list) > 4 {
		t.Fatalf("after a restart, snapshot list has %d snapshots, want 3 or 4", len(list))
	}
	for i, s := range list {
		if !strings.HasSuffix(s.File, ".db.zst.age") || s.Compression != "zstd" || !slices.Equal(s.Recipients, []string{recipient}) {
			t.Errorf("%s: compression %q recipients %v; want zstd and age to %s", s.File, s.Compression, s.Recipients, recipient)
		}
		if info, err := os.Stat(s.Path); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", s.Path, err)
		}
		if !slices.Contains(logged, s.Path) && i != 0 {
			t.Errorf("%s is listed but its after hook never ran", s.Path)
		}
		if i > 0 && s.Revision > list[i-1].Revision {
			t.Errorf("%s (revision %d) is older than %s (revision %d) but at a higher revision", s.File, s.Revision, list[i-1].File, list[i-1].Revision)
		}
		got := snapshotStatus(t, s.Path, "--identity", identity)
		if got.Revision != s.Revision || got.TotalKeys != s.TotalKeys || got.Hash != s.Hash {
			t.Errorf("%s: status %+v does not match its manifest (revision %d, keys %d, hash %d)", s.File, got, s.Revision, s.TotalKeys, s.Hash)
		}
		if out, errOut, code := runCLI(t, "snapshot", "verify", s.Path, "--identity", identity); code != 0 {
			t.Errorf("snapshot verify %s: exit %d\n%s%s", s.File, code, out, errOut)
		}
	}
	// Snapshots taken while the writer ran hold different data.
	if newest, oldest := list[0], list[len(list)-1]; newest.Revision <= oldest.Revision {
		t.Errorf("the newest snapshot is at revision %d, the oldest at %d: the writes between them are missing", newest.Revision, oldest.Revision)
	}
	if st := statusJSON(t, "--config", cfg); st.LastSnapshot == nil || st.LastSnapshot.Path != list[0].Path {
		t.Errorf("after a restart, status lastSnapshot is %+v, want %s", st.LastSnapshot, list[0].Path)
	}
	if got := gaugeValue(scrapeMetrics(t, m.metricsAddr)["etcdvisor_snapshots_kept"]); got != float64(len(list)) {
		t.Errorf("after a restart, etcdvisor_snapshots_kept = %v, want %d", got, len(list))
	}
	if code := p.stop(); code != 0 {
		t.Errorf("etcdvisor exited %d", code)
	}
}

func TestAnUncompressedSnapshotMatchesEtcdutlAndAnEtcdctlSnapshotRestoresWithEtcdvisor(t *testing.T) {
	m := newMember(t, "plain")
	m.top = "snapshot:\n  compress: false\n"
	cfg := m.writeConfig(t)
	p := startDaemon(t, []string{"--config", cfg})
	p.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cli := newClient(t, m.clientURL)
	want := putKeys(ctx, t, cli, "/registry/configmaps/default/cm-", 40)
	// Deleted keys leave tombstones: the key count is not the revision.
	for i := range 5 {
		key := fmt.Sprintf("/registry/configmaps/default/cm-%02d", i)
		if _, err := cli.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		delete(want, key)
	}

	// etcdvisor keeps its own keys beside them (its registry record):
	// those are in the snapshot too.
	var own int64
	for deadline := time.Now().Add(waitLimit); own == 0; time.Sleep(100 * time.Millisecond) {
		resp, err := cli.Get(ctx, "/etcdvisor/v1/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if own = resp.Count; own == 0 && time.Now().After(deadline) {
			t.Fatal("no registry record under /etcdvisor/v1/: the daemon publishes one once ready")
		}
	}
	wantKeys := len(want) + int(own)

	// An uncompressed, unencrypted etcdvisor snapshot is a plain etcd
	// snapshot: etcdutl reads the same figures from it and restores it.
	s := saveSnapshot(t, cfg)
	if !strings.HasSuffix(s.Path, ".db") || s.Compression != "none" || len(s.Recipients) != 0 {
		t.Fatalf("snapshot %s: compression %q recipients %v; want a plain .db", s.Path, s.Compression, s.Recipients)
	}
	ours := snapshotStatus(t, s.Path)
	if theirs := etcdutlStatus(t, s.Path); ours != theirs {
		t.Errorf("etcdvisor snapshot status %+v, etcdutl %+v: want the same hash, revision, totalKey, totalSize and version", ours, theirs)
	}
	if ours.TotalKeys != wantKeys || ours.Revision != s.Revision || ours.Hash != s.Hash {
		t.Errorf("snapshot status %+v; want %d keys and the manifest's revision %d and hash %d", ours, wantKeys, s.Revision, s.Hash)
	}
	// So is one saved straight from the member, without the daemon.
	direct := filepath.Join(shortDir(t), "direct.db")
	mustCLI(t, "snapshot", "save", "--endpoints", m.clientURL, direct)
	if ours, theirs := snapshotStatus(t, direct), etcdutlStatus(t, direct); ours != theirs || ours.TotalKeys != wantKeys {
		t.Errorf("direct save: etcdvisor snapshot status %+v, etcdutl %+v; want the same, with %d keys", ours, theirs, wantKeys)
	}
	restored := filepath.Join(shortDir(t), "etcdutl-restored")
	if _, errOut, code := runBin(t, etcdutlBin, "snapshot", "restore", s.Path, "--data-dir", restored); code != 0 {
		t.Errorf("etcdutl snapshot restore of an etcdvisor snapshot: exit %d\n%s", code, tail(errOut, 10))
	} else if _, err := os.Stat(filepath.Join(restored, "member", "snap", "db")); err != nil {
		t.Errorf("etcdutl restored no DB: %v", err)
	}

	// The other way: a snapshot from etcdctl restores with etcdvisor, and
	// a new etcdvisor serves its keys.
	f := filepath.Join(shortDir(t), "etcdctl.db")
	if _, errOut, code := runBin(t, etcdctlBin, "--endpoints", m.clientURL, "snapshot", "save", f); code != 0 {
		t.Fatalf("etcdctl snapshot save: exit %d\n%s", code, errOut)
	}
	fromEtcdctl := snapshotStatus(t, f)
	if code := p.stop(); code != 0 {
		t.Fatalf("etcdvisor exited %d", code)
	}
	r := newMember(t, "restored")
	r.extra = "  initial-cluster-token: restored-from-etcdctl\n"
	mustCLI(t, "snapshot", "restore", f, "--data-dir", r.dataDir(), "--name", r.name,
		"--initial-cluster", r.name+"="+r.peerURL, "--initial-cluster-token", "restored-from-etcdctl",
		"--initial-advertise-peer-urls", r.peerURL)
	pr := startDaemon(t, []string{"--config", r.writeConfig(t)})
	pr.waitReady()
	resp, err := newClient(t, r.clientURL).Get(ctx, "/registry/configmaps/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get from the restored member: %v", err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	if !maps.Equal(got, want) {
		t.Errorf("the restored member holds %d keys %v, want %d %v", len(got), got, len(want), want)
	}
	if resp.Header.Revision < fromEtcdctl.Revision {
		t.Errorf("the restored member is at revision %d, below the snapshot's %d", resp.Header.Revision, fromEtcdctl.Revision)
	}
	if code := pr.stop(); code != 0 {
		t.Errorf("restored etcdvisor exited %d", code)
	}
}

func TestDamagedOrUnreadableSnapshotsAreRefusedAndNothingIsWritten(t *testing.T) {
	identity, recipient := newAgeKey(t)
	otherIdentity, _ := newAgeKey(t)
	m := newMember(t, "bad")
	m.top = fmt.Sprintf("snapshot:\n  compress: true\n  recipients: [%s]\n", recipient)
	cfg := m.writeConfig(t)
	p := startDaemon(t, []string{"--config", cfg})
	p.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	putKeys(ctx, t, newClient(t, m.clientURL), "/registry/secrets/default/s-", 20)

	encrypted := saveSnapshot(t, cfg).Path
	plain := filepath.Join(shortDir(t), "etcdctl.db")
	if _, errOut, code := runBin(t, etcdctlBin, "--endpoints", m.clientURL, "snapshot", "save", plain); code != 0 {
		t.Fatalf("etcdctl snapshot save: exit %d\n%s", code, errOut)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("etcdvisor exited %d", code)
	}
	// Sanity: the good files pass, so the failures below are the damage's.
	for _, args := range [][]string{{plain}, {encrypted, "--identity", identity}} {
		for _, cmd := range []string{"status", "verify"} {
			if out, errOut, code := runCLI(t, append([]string{"snapshot", cmd}, args...)...); code != 0 {
				t.Fatalf("snapshot %s %v of a good file: exit %d\n%s%s", cmd, args, code, out, errOut)
			}
		}
	}

	good := readBytes(t, plain)
	enc := readBytes(t, encrypted)
	bad := shortDir(t)
	var written []string
	write := func(name string, b []byte) string {
		written = append(written, name)
		path := filepath.Join(bad, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// Status and verify copy the plaintext DB here while they check it.
	scratch := shortDir(t)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	tests := []struct {
		name     string
		file     string
		identity string
		want     string // in stderr of status, verify and restore
	}{
		{"a truncated file", write("truncated.db", good[:len(good)-100]), "", "truncated"},
		{"a flipped byte", write("flipped.db", flipped), "", "sha256 trailer does not match"},
		{"a missing sha256 trailer", write("no-trailer.db", good[:len(good)-32]), "", "no sha256 trailer"},
		{"a truncated encrypted file", write("truncated.db.zst.age", enc[:len(enc)/2]), identity, "decrypt age"},
		{"the wrong age identity", encrypted, otherIdentity, "none of the given identities can decrypt"},
		{"no identity for an encrypted file", encrypted, "", "no identity was given"},
		{"a file that is not a snapshot", write("not-a-snapshot.db", []byte(strings.Repeat(mustRead(t, cfg), 20))), "", "not an etcd snapshot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var id []string
			if tt.identity != "" {
				id = []string{"--identity", tt.identity}
			}
			target := filepath.Join(shortDir(t), "data")
			if err := os.Mkdir(target, 0o700); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"snapshot", "status", tt.file, "-w", "json", "--tmp-dir", scratch},
				{"snapshot", "verify", tt.file, "--tmp-dir", scratch},
				{"snapshot", "restore", tt.file, "--data-dir", target},
			} {
				out, errOut, code := runCLI(t, append(args, id...)...)
				if code == 0 || !strings.Contains(errOut, tt.want) {
					t.Errorf("%s: exit %d, stderr %q; want a failure saying %q\nstdout: %s", strings.Join(args[:2], " "), code, strings.TrimSpace(errOut), tt.want, out)
				}
				t.Logf("%s refused: %s", args[1], tail(errOut, 1))
			}
			if entries, _ := os.ReadDir(target); len(entries) != 0 {
				t.Errorf("a refused restore wrote into the data dir: %v", names(entries))
			}
		})
	}
	// No plaintext copy or partial output stays behind anywhere.
	if entries, _ := os.ReadDir(bad); !sameSet(names(entries), written) {
		t.Errorf("the damaged files' dir holds %v, want only the files written %v", names(entries), written)
	}
	if entries, _ := os.ReadDir(scratch); len(entries) != 0 {
		t.Errorf("status and verify left %v in --tmp-dir", names(entries))
	}

	t.Run("a data dir that is not empty", func(t *testing.T) {
		target := shortDir(t)
		keep := filepath.Join(target, "keep-me")
		os.WriteFile(keep, []byte("the operator's"), 0o600)
		_, errOut, code := runCLI(t, "snapshot", "restore", plain, "--data-dir", target)
		if code == 0 || !strings.Contains(errOut, "not empty") {
			t.Errorf("restore into a non-empty data dir: exit %d, stderr %q; want a refusal saying it is not empty", code, errOut)
		}
		entries, _ := os.ReadDir(target)
		if len(entries) != 1 || mustRead(t, keep) != "the operator's" {
			t.Errorf("the non-empty data dir changed: %v", names(entries))
		}
	})
}

func TestAFullSnapshotDirFailsTheSaveCleanlyAndKeepsTheOlderSnapshot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	m := newMember(t, "full")
	dir := filepath.Join(shortDir(t), "snapshots")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, dir, "2m")
	m.top = fmt.Sprintf("snapshot:\n  dir: %s\n  compress: false\n", dir)
	cfg := m.writeConfig(t)
	p := startDaemon(t, []string{"--config", cfg})
	p.waitReady()
	older := saveSnapshot(t, cfg)

	// Grow the DB past the tmpfs: 48 values of 64 KiB are 3 MiB.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	growDB(ctx, t, newClient(t, m.clientURL), 48)
	// etcd commits its backend in batches: the DB file grows a moment later.
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(100 * time.Millisecond) {
		st := statusJSON(t, "--config", cfg)
		if st.DBSize > 2<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DB is %d bytes, want more than the 2 MiB snapshot dir", st.DBSize)
		}
	}

	out, errOut, code := runCLI(t, "snapshot", "save", "--config", cfg)
	if code == 0 || !strings.Contains(errOut, "no space left on device") {
		t.Errorf("snapshot save into a full dir: exit %d, stderr %q; want a failure saying no space left on device\n%s", code, errOut, out)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{older.File, filepath.Base(snapshot.ManifestPath(older.Path))}
	if got := names(entries); !sameSet(got, want) {
		t.Errorf("snapshot dir holds %v after the failed save, want only the older snapshot %v", got, want)
	}
	list := snapshotList(t, cfg)
	if len(list) != 1 || list[0].File != older.File {
		t.Errorf("snapshot list: %v, want only %s", listedNames(list), older.File)
	}
	if out, errOut, code := runCLI(t, "snapshot", "verify", older.Path); code != 0 {
		t.Errorf("snapshot verify of the older snapshot: exit %d\n%s%s", code, out, errOut)
	}
	st := statusJSON(t, "--config", cfg)
	if st.LastSnapshot == nil || st.LastSnapshot.Path != older.Path || !strings.Contains(st.LastSnapshotError, "no space left on device") {
		t.Errorf("status: lastSnapshot %+v lastSnapshotError %q; want the older snapshot and the disk-full error", st.LastSnapshot, st.LastSnapshotError)
	}
	if got := gaugeValue(scrapeMetrics(t, m.metricsAddr)["etcdvisor_snapshot_last_attempt_success"]); got != 0 {
		t.Errorf("etcdvisor_snapshot_last_attempt_success = %v after a failed save, want 0", got)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("etcdvisor exited %d", code)
	}
}

func TestAKillDuringASnapshotLeavesNoPartialFilesAndListsOnlyGoodSnapshots(t *testing.T) {
	m := newMember(t, "killed")
	// 256 KiB/s makes a snapshot of a few MiB take seconds: time to kill.
	m.top = "snapshot:\n  compress: true\n  rate-limit: 256KiB\n"
	cfg := m.writeConfig(t)
	p := startDaemon(t, []string{"--config", cfg})
	p.waitReady()
	good := saveSnapshot(t, cfg) // a fresh DB is small: fast even at 256 KiB/s
	dir := filepath.Dir(good.Path)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	growDB(ctx, t, newClient(t, m.clientURL), 48)

	done := make(chan struct{})
	go func() {
		defer close(done)
		// Fails when the daemon dies under it; that is the point.
		control.NewClient(m.socket()).Post(ctx, "/v1/snapshots", nil, nil)
	}()
	part := waitForMatch(t, dir, func(n string) bool { return strings.HasSuffix(n, ".part") })
	p.cmd.Process.Kill()
	p.exitCode()
	<-done
	if _, err := os.Stat(filepath.Join(dir, part)); err != nil {
		t.Fatalf("the kill left no %s to clean up: %v", part, err)
	}

	p = startDaemon(t, []string{"--config", cfg})
	p.waitReady()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names(entries) {
		if strings.HasSuffix(n, ".part") || strings.Contains(n, ".plain-") {
			t.Errorf("after a restart the snapshot dir still holds %s", n)
		}
	}
	want := []string{good.File, filepath.Base(snapshot.ManifestPath(good.Path))}
	if got := names(entries); !sameSet(got, want) {
		t.Errorf("snapshot dir holds %v, want only the good snapshot %v", got, want)
	}
	list := snapshotList(t, cfg)
	if len(list) != 1 || list[0].File != good.File {
		t.Errorf("snapshot list: %v, want only %s", listedNames(list), good.File)
	}
	if out, errOut, code := runCLI(t, "snapshot", "verify", good.Path); code != 0 {
		t.Errorf("snapshot verify of the good snapshot: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(p.stderr.String(), part) {
		t.Errorf("the restarted daemon did not log removing %s:\n%s", part, tail(p.stderr.String(), 10))
	}
	if code := p.stop(); code != 0 {
		t.Errorf("etcdvisor exited %d", code)
	}
}

func TestDisasterRecoveryRestoresOneSnapshotOnEveryMemberIntoANewHealthyCluster(t *testing.T) {
	c := NewCluster(t, WithMembers(3))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	want := putKeys(ctx, t, c.Client(0, 1, 2), "/registry/pods/default/pod-", 30)
	oldCluster := statusJSON(t, "--config", c.Members[0].configPath()).ClusterID

	// One snapshot, through member b's daemon (compressed by default),
	// copied off the host as an after hook would.
	s := saveSnapshot(t, c.Members[1].configPath())
	if s.Compression != "zstd" {
		t.Fatalf("snapshot compression %q, want zstd", s.Compression)
	}
	backup := filepath.Join(shortDir(t), s.File)
	if err := os.WriteFile(backup, readBytes(t, s.Path), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "snapshot", "verify", backup)

	// Quorum lost for good: every member stopped, every data dir gone.
	c.Stop()
	for _, m := range c.Members {
		if err := os.RemoveAll(m.dataDir()); err != nil {
			t.Fatal(err)
		}
	}
	// The same file on every member: its own name, the same
	// initial-cluster, a new token.
	const token = "e2e-recovered"
	for _, m := range c.Members {
		mustCLI(t, "snapshot", "restore", backup, "--data-dir", m.dataDir(), "--name", m.name,
			"--initial-cluster", m.cluster, "--initial-cluster-token", token,
			"--initial-advertise-peer-urls", m.peerURL, "--mark-compacted", "--bump-revision", "1000")
		m.extra = "  initial-cluster-token: " + token + "\n"
		m.writeConfig(t)
	}
	c.StartAll()

	c.CheckHealthy(0)
	var clusterIDs []string
	for _, m := range c.Members {
		clusterIDs = append(clusterIDs, statusJSON(t, "--config", m.configPath()).ClusterID)
	}
	if clusterIDs[0] == "" || clusterIDs[0] == oldCluster || clusterIDs[1] != clusterIDs[0] || clusterIDs[2] != clusterIDs[0] {
		t.Errorf("cluster IDs %v (old %s); want one new cluster", clusterIDs, oldCluster)
	}
	for i, m := range c.Members {
		resp, err := c.Client(i).Get(ctx, "/registry/pods/", clientv3.WithPrefix(), clientv3.WithSerializable())
		if err != nil {
			t.Fatalf("get from %s: %v", m.name, err)
		}
		got := map[string]string{}
		for _, kv := range resp.Kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s holds %d keys, want %d", m.name, len(got), len(want))
		}
		// The revision moved on by the bump, and what lies below it is
		// compacted: a watcher from an old revision relists.
		if resp.Header.Revision < s.Revision+1000 {
			t.Errorf("%s is at revision %d, want at least %d (snapshot %d + bump 1000)", m.name, resp.Header.Revision, s.Revision+1000, s.Revision)
		}
	}
	_, err := c.Client(0, 1, 2).Get(ctx, "/registry/pods/", clientv3.WithPrefix(), clientv3.WithRev(s.Revision))
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("get at the snapshot's revision %d after the restore: %v, want %v", s.Revision, err, rpctypes.ErrCompacted)
	}
	// The recovered cluster takes writes.
	putEventually(ctx, t, c.Client(0, 1, 2), "/registry/pods/default/after", "recovery")
	c.Stop()
}

// StartAll starts every member's etcdvisor with its config, together (a
// member of a new cluster waits for quorum before it is ready).
func (c *Cluster) StartAll() {
	c.t.Helper()
	for i, m := range c.Members {
		c.Procs[i] = startDaemon(c.t, []string{"--config", m.configPath()})
	}
	c.waitReady(c.Procs...)
}

// newAgeKey makes an age key pair: the identity in a file (mode 0600), as
// an operator keeps it off the etcd hosts, and the recipient (public key)
// for a daemon's snapshot.recipients.
func newAgeKey(t *testing.T) (identityFile, recipient string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	identityFile = filepath.Join(shortDir(t), "identity.txt")
	if err := os.WriteFile(identityFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return identityFile, id.Recipient().String()
}

// runBin runs another binary (etcdctl, etcdutl) and returns its output and
// exit code.
func runBin(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return out.String(), errb.String(), code
}

// mustCLI runs an etcdvisor command that must succeed and returns stdout.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("etcdvisor %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// snapshotList is `etcdvisor snapshot list -w json` of the daemon with
// config cfg, newest first.
func snapshotList(t *testing.T, cfg string) []snapshot.Listed {
	t.Helper()
	out := mustCLI(t, "snapshot", "list", "-w", "json", "--config", cfg)
	var doc struct {
		Dir       string            `json:"dir"`
		Snapshots []snapshot.Listed `json:"snapshots"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("snapshot list -w json: %v\n%s", err, out)
	}
	return doc.Snapshots
}

// saveSnapshot takes a snapshot through the daemon with config cfg
// (`snapshot save -w json`) and checks the daemon lists it as its newest.
func saveSnapshot(t *testing.T, cfg string) snapshot.Listed {
	t.Helper()
	out := mustCLI(t, "snapshot", "save", "-w", "json", "--config", cfg)
	var saved snapshot.Listed
	if err := json.Unmarshal([]byte(out), &saved); err != nil {
		t.Fatalf("snapshot save -w json: %v\n%s", err, out)
	}
	if list := snapshotList(t, cfg); len(list) == 0 || list[0].Path != saved.Path {
		t.Fatalf("snapshot save wrote %s, but the newest listed is %v", saved.Path, listedNames(list))
	}
	return saved
}

// snapshotStatus is `etcdvisor snapshot status FILE -w json`.
func snapshotStatus(t *testing.T, file string, args ...string) snapshot.Status {
	t.Helper()
	out := mustCLI(t, append([]string{"snapshot", "status", file, "-w", "json"}, args...)...)
	var st snapshot.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("snapshot status -w json: %v\n%s", err, out)
	}
	return st
}

// etcdutlStatus is `etcdutl snapshot status FILE -w json`.
func etcdutlStatus(t *testing.T, file string) snapshot.Status {
	t.Helper()
	out, errOut, code := runBin(t, etcdutlBin, "snapshot", "status", file, "-w", "json")
	if code != 0 {
		t.Fatalf("etcdutl snapshot status %s: exit %d\n%s", file, code, errOut)
	}
	var st snapshot.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("etcdutl snapshot status -w json: %v\n%s", err, out)
	}
	return st
}

// startWriter puts keys through cli, one every few milliseconds, until
// stopped or max puts are done. stop waits for it and returns how many
// puts succeeded; it is also called at cleanup.
func startWriter(t *testing.T, cli *clientv3.Client, max int) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n := 0
	go func() {
		defer close(done)
		for i := 0; i < max && ctx.Err() == nil; i++ {
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := cli.Put(pctx, fmt.Sprintf("/registry/events/default/e-%04d", i), strings.Repeat("x", 256)); err == nil {
				n++
			}
			pcancel()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var once sync.Once
	stop = func() int {
		once.Do(func() {
			cancel()
			<-done
		})
		return n
	}
	t.Cleanup(func() { stop() })
	return stop
}

// putKeys puts n keys prefix00.. and returns them with their values.
func putKeys(ctx context.Context, t *testing.T, cli *clientv3.Client, prefix string, n int) map[string]string {
	t.Helper()
	kvs := map[string]string{}
	for i := range n {
		k, v := fmt.Sprintf("%s%02d", prefix, i), fmt.Sprintf("value-%d", i)
		putEventually(ctx, t, cli, k, v)
		kvs[k] = v
	}
	return kvs
}

// growDB puts n values of 64 KiB that do not compress.
func growDB(ctx context.Context, t *testing.T, cli *clientv3.Client, n int) {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{1})
	val := make([]byte, 64<<10)
	for i := range n {
		rng.Read(val)
		putEventually(ctx, t, cli, fmt.Sprintf("/registry/blobs/b-%03d", i), string(val))
	}
}

// mountTmpfs mounts a tmpfs of size on dir until cleanup.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
}

// waitForLines waits until file has at least n lines, failing if p exits,
// and returns them.
func waitForLines(t *testing.T, file string, n int, p *process) []string {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(file)
		if lines := strings.Fields(string(b)); len(lines) >= n {
			return lines
		}
		select {
		case <-p.done:
			t.Fatalf("etcdvisor exited while waiting for %d lines in %s:\n%s", n, file, tail(p.stderr.String(), 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has fewer than %d lines after %s: %q\n%s", file, n, waitLimit, b, tail(p.stderr.String(), 20))
		}
	}
}

// waitForMatch waits until a file in dir has a name that match accepts,
// and returns that name.
func waitForMatch(t *testing.T, dir string, match func(string) bool) string {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(10 * time.Millisecond) {
		entries, _ := os.ReadDir(dir)
		for _, n := range names(entries) {
			if match(n) {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching file in %s within %s: %v", dir, waitLimit, names(entries))
		}
	}
}

func scrapeMetrics(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func names(entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func listedNames(list []snapshot.Listed) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.File)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
