package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/output"
	"github.com/etcdvisor/etcdvisor/internal/snapshot"
)

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

func TestIdentityErrorsNameTheFlagAndTheFile(t *testing.T) {
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

	o := snapshotReadOptions{identities: []string{good, good}}
	ids, err := o.ageIdentities()
	if err != nil || len(ids) != 2 {
		t.Fatalf("got %d identities, err %v; want 2", len(ids), err)
	}
	for _, p := range []string{missing, notKey} {
		o := snapshotReadOptions{identities: []string{good, p}}
		_, err := o.ageIdentities()
		if err == nil || !strings.HasPrefix(err.Error(), "--identity "+p+": ") {
			t.Errorf("%s: got %v, want an error naming it", p, err)
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

// TestCLIChild is not a test: run by a test, with ETCDVISOR_TEST_CLI set,
// it is the etcdvisor command line with the arguments after "--", so a test
// can signal a real process.
func TestCLIChild(t *testing.T) {
	if os.Getenv("ETCDVISOR_TEST_CLI") == "" {
		t.Skip("runs only as a child of another test")
	}
	args := os.Args[slices.Index(os.Args, "--")+1:]
	os.Args = append([]string{"etcdvisor"}, args...)
	os.Exit(Execute())
}

func TestSnapshotRestoreInterruptedBySIGINTLeavesNothingInTheDataDir(t *testing.T) {
	// The snapshot is a FIFO the test writes slowly: the restore is still
	// copying when SIGINT comes, however fast the disk.
	dir := t.TempDir()
	fifo := filepath.Join(dir, "etcd.db")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Read-write, so opening does not wait for the child; closing it ends a
	// write blocked on a child that stopped reading.
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	go func() {
		// A bbolt meta page's magic is all the restore reads before it copies.
		page := make([]byte, 4096)
		binary.LittleEndian.PutUint32(page[16:], 0xED0CDAED)
		for _, err := w.Write(page); err == nil; _, err = w.Write(make([]byte, 64<<10)) {
			time.Sleep(5 * time.Millisecond)
		}
	}()

	dataDir := filepath.Join(dir, "data")
	var stderr bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestCLIChild$", "--", "snapshot", "restore", fifo, "--data-dir", dataDir)
	cmd.Env = append(os.Environ(), "ETCDVISOR_TEST_CLI=1")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	db := filepath.Join(dataDir, "member", "snap", "db")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(db); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			t.Fatalf("the restore did not start copying within 30s; stderr: %s", stderr.String())
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("still running 30s after SIGINT; stderr: %s", stderr.String())
	}
	t.Logf("stderr: %s", stderr.String())
	if code := cmd.ProcessState.ExitCode(); code != exitError {
		t.Errorf("got exit code %d, want %d", code, exitError)
	}
	if want := "interrupted; nothing was left in " + dataDir; !strings.Contains(stderr.String(), want) {
		t.Errorf("got stderr %q, want a line containing %q", stderr.String(), want)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data dir, missing before the restore, is there after it (%v)", err)
	}
}
