package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/output"
	"github.com/etcdvisor/etcdvisor/internal/progress"
	"github.com/etcdvisor/etcdvisor/internal/snapshot"
)

func TestSnapshotTarget(t *testing.T) {
	tmp := t.TempDir()
	for _, tc := range []struct {
		name              string
		file              string
		compress, encrypt bool
		wantDir, wantName string
		wantErr           string
	}{
		{name: "bare name", file: "x", wantDir: ".", wantName: "x"},
		{name: ".db is stripped", file: "/backup/etcd.db", wantDir: "/backup", wantName: "etcd"},
		{name: ".db.zst with --compress", file: "b/x.db.zst", compress: true, wantDir: "b", wantName: "x"},
		{name: ".db.zst.age with both", file: "x.db.zst.age", compress: true, encrypt: true, wantDir: ".", wantName: "x"},
		{name: ".age alone", file: "x.age", encrypt: true, wantDir: ".", wantName: "x"},
		{name: "no extension, both flags", file: "x", compress: true, encrypt: true, wantDir: ".", wantName: "x"},
		{name: "dots inside the name stay", file: "etcd-2026.11.25.db", wantDir: ".", wantName: "etcd-2026.11.25"},
		{name: ".zst without --compress", file: "x.db.zst", wantErr: "without --compress"},
		{name: ".age without --recipient", file: "x.db.age", wantErr: "without --recipient"},
		{name: "trailing slash", file: "backup/", wantErr: "expected a file name"},
		{name: "only an extension", file: "b/.db", wantErr: "expected a file name"},
		{name: "empty", file: "", wantErr: "expected a file name"},
		{name: "existing directory", file: tmp, wantErr: "is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, name, err := snapshotTarget(tc.file, tc.compress, tc.encrypt)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %q, err %v; want an error containing %q", dir, name, err, tc.wantErr)
				}
				return
			}
			if err != nil || dir != tc.wantDir || name != tc.wantName {
				t.Errorf("got %q, %q, err %v; want %q, %q", dir, name, err, tc.wantDir, tc.wantName)
			}
		})
	}
}

// runRoot runs the command line and returns its error.
func runRoot(t *testing.T, args ...string) error {
	t.Helper()
	root := newRootCommand()
	root.SetArgs(args)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	return root.Execute()
}

func TestSnapshotCommandsRefuseFlagsThatDoNotGoTogetherAsUsageErrors(t *testing.T) {
	// None of these may reach a daemon or a member: the socket and the URL
	// lead nowhere, and a usage error comes first.
	nowhere := filepath.Join(t.TempDir(), "none.sock")
	member := "http://127.0.0.1:1"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a FILE without --endpoints", []string{"snapshot", "save", "--socket", nowhere, "x.db"}, "is for --endpoints"},
		{"--compress without --endpoints", []string{"snapshot", "save", "--socket", nowhere, "--compress"}, "--compress is for --endpoints"},
		{"--recipient without --endpoints", []string{"snapshot", "save", "--recipient", "age1x"}, "--recipient is for --endpoints"},
		{"--socket with --endpoints", []string{"snapshot", "save", "--endpoints", member, "--socket", nowhere, "x.db"}, "--socket finds the daemon"},
		{"--endpoints without FILE", []string{"snapshot", "save", "--endpoints", member}, "needs FILE"},
		{"two endpoints", []string{"snapshot", "save", "--endpoints", member + "," + member, "x.db"}, "one client URL"},
		{"a bad rate", []string{"snapshot", "save", "--endpoints", member, "--rate-limit", "fast", "x.db"}, "--rate-limit"},
		{"a bad recipient", []string{"snapshot", "save", "--endpoints", member, "--recipient", "AGE-SECRET-KEY-1X", "x.db"}, "--recipient"},
		{"--cert without --key", []string{"snapshot", "save", "--endpoints", member, "--cert", "c.crt", "x.db"}, "--cert and --key go together"},
		{"a .zst FILE without --compress", []string{"snapshot", "save", "--endpoints", member, "x.db.zst"}, "without --compress"},
		{"a zero --timeout", []string{"snapshot", "save", "--socket", nowhere, "--timeout", "0s"}, "--timeout"},
		{"an unknown format", []string{"snapshot", "save", "--socket", nowhere, "-w", "yaml"}, "-w"},
		{"list with an unknown format", []string{"snapshot", "list", "--socket", nowhere, "-w", "yaml"}, "-w"},
		{"status without FILE", []string{"snapshot", "status"}, "accepts 1 arg"},
		{"--bump-revision alone", []string{"snapshot", "restore", "x.db", "--bump-revision", "10"}, "go together"},
		{"--mark-compacted alone", []string{"snapshot", "restore", "x.db", "--mark-compacted"}, "go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := runRoot(t, tc.args...)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want a usage error containing %q", err, tc.want)
			}
		})
	}
}

func TestSnapshotRestoreTakesFlagsOverConfigOverEtcdutlDefaults(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "etcdvisor.yaml")
	cfg := `etcd:
  name: b
  data-dir: /var/lib/b
  wal-dir: /wal/b
  initial-advertise-peer-urls: [https://10.0.0.2:2380]
  initial-cluster: a=https://10.0.0.1:2380,b=https://10.0.0.2:2380
  initial-cluster-token: prod
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want snapshot.RestoreOptions
	}{
		{"etcdutl's defaults", nil, snapshot.RestoreOptions{
			Name: "default", DataDir: "default.etcd", InitialCluster: "default=http://localhost:2380",
			InitialClusterToken: "etcd-cluster", PeerURLs: []string{"http://localhost:2380"},
		}},
		{"the initial cluster follows name and peer URLs", []string{"--name", "a", "--initial-advertise-peer-urls", "http://10.0.0.1:2380"}, snapshot.RestoreOptions{
			Name: "a", DataDir: "a.etcd", InitialCluster: "a=http://10.0.0.1:2380",
			InitialClusterToken: "etcd-cluster", PeerURLs: []string{"http://10.0.0.1:2380"},
		}},
		{"the config's etcd section", []string{"--config", cfgPath}, snapshot.RestoreOptions{
			Name: "b", DataDir: "/var/lib/b", WalDir: "/wal/b", InitialCluster: "a=https://10.0.0.1:2380,b=https://10.0.0.2:2380",
			InitialClusterToken: "prod", PeerURLs: []string{"https://10.0.0.2:2380"},
		}},
		{"flags over the config", []string{"--config", cfgPath, "--data-dir", "/restore", "--wal-dir", "", "--initial-cluster-token", "new", "--skip-hash-check"}, snapshot.RestoreOptions{
			Name: "b", DataDir: "/restore", InitialCluster: "a=https://10.0.0.1:2380,b=https://10.0.0.2:2380",
			InitialClusterToken: "new", PeerURLs: []string{"https://10.0.0.2:2380"}, SkipHashCheck: true,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o snapshotRestoreOptions
			cmd := &cobra.Command{}
			o.bind(cmd)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := o.resolve(cmd.Flags())
			if err != nil {
				t.Fatal(err)
			}
			// etcdvisor's own files may always stay in the data dir.
			tc.want.Keep = []string{config.LockName, config.SocketName, config.SnapshotDirName}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestReadIdentitiesNamesTheFileThatFails(t *testing.T) {
	dir := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "key.txt")
	notKey := filepath.Join(dir, "recipient.txt")
	missing := filepath.Join(dir, "missing.txt")
	os.WriteFile(good, []byte("# created: now\n# public key: "+id.Recipient().String()+"\n"+id.String()+"\n"), 0o600)
	os.WriteFile(notKey, []byte(id.Recipient().String()+"\n"), 0o600)

	ids, err := readIdentities([]string{good, good})
	if err != nil || len(ids) != 2 {
		t.Fatalf("got %d identities, err %v; want 2", len(ids), err)
	}
	for _, p := range []string{missing, notKey} {
		_, err := readIdentities([]string{good, p})
		if err == nil || !strings.HasPrefix(err.Error(), "--identity "+p+": ") {
			t.Errorf("%s: got %v, want an error naming it", p, err)
		}
	}
}

// fakeSnapshotStream answers RecvMsg with the given chunks, as etcd's
// snapshot stream does: each says how many bytes remain, then the trailer.
type fakeSnapshotStream struct {
	grpc.ClientStream
	msgs []*pb.SnapshotResponse
}

func (f *fakeSnapshotStream) RecvMsg(m any) error {
	next := f.msgs[0]
	f.msgs = f.msgs[1:]
	r := m.(*pb.SnapshotResponse)
	r.Blob, r.RemainingBytes = next.Blob, next.RemainingBytes
	return nil
}

func TestCountingStreamTakesTheTotalFromTheFirstMessage(t *testing.T) {
	bar := progress.New(&bytes.Buffer{}, "saving") // records, draws nothing
	defer bar.Stop()
	s := &countingStream{bar: bar, ClientStream: &fakeSnapshotStream{msgs: []*pb.SnapshotResponse{
		{Blob: make([]byte, 4), RemainingBytes: 6},
		{Blob: make([]byte, 6), RemainingBytes: 0},
		{Blob: make([]byte, 32), RemainingBytes: 0}, // the sha256 trailer
	}}}
	for i, want := range []int64{4, 10, 10} {
		if err := s.RecvMsg(&pb.SnapshotResponse{}); err != nil {
			t.Fatal(err)
		}
		if s.n != want || s.total != 10 {
			t.Errorf("after message %d: got %d of %d, want %d of 10", i+1, s.n, s.total, want)
		}
	}
}

func TestSnapshotStatusPrintsWhatEtcdutlPrints(t *testing.T) {
	st := snapshot.Status{Hash: 0xeee7b0ff, Revision: 21, TotalKeys: 20, TotalSize: 20480, Version: "3.7.0"}
	for _, tc := range []struct{ format, want string }{
		// etcdutl 3.7 draws the same table with box-drawing characters.
		{output.Table, `+----------+----------+------------+------------+---------+
|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE | VERSION |
+----------+----------+------------+------------+---------+
| eee7b0ff |       21 |         20 |      20 kB |   3.7.0 |
+----------+----------+------------+------------+---------+
`},
		{output.JSON, `{"hash":4008161535,"revision":21,"totalKey":20,"totalSize":20480,"version":"3.7.0"}
`},
	} {
		var b bytes.Buffer
		if err := output.SnapshotStatus(&b, tc.format, st); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("-w %s: got\n%s\nwant\n%s", tc.format, b.String(), tc.want)
		}
	}
}
