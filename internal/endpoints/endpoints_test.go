package endpoints

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

var three = []api.Member{
	{ID: "1", Name: "a", ClientURLs: []string{"https://10.0.0.1:2379"}},
	{ID: "2", Name: "b", ClientURLs: []string{"https://10.0.0.2:2379"}},
	{ID: "3", Name: "c", ClientURLs: []string{"https://10.0.0.3:2379"}},
	{ID: "4", Name: "d", ClientURLs: []string{"https://10.0.0.4:2379"}, IsLearner: true},
}

func TestEtcdServersListsVotersOnly(t *testing.T) {
	got, err := EtcdServers(three)
	if want := "https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379"; err != nil || got != want {
		t.Fatalf("got %q %v, want %q", got, err, want)
	}
	if _, err := EtcdServers(three[3:]); err == nil {
		t.Fatal("a learner alone gave a value; want an error")
	}
}

func TestHAProxyHasOneServerLinePerVoter(t *testing.T) {
	got, err := HAProxy(three)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"backend etcd\n", "mode tcp\n", "server a 10.0.0.1:2379 check\n", "server c 10.0.0.3:2379 check\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "10.0.0.4") {
		t.Errorf("the learner is in the backend:\n%s", got)
	}
}

func TestWriteFileReplacesAtomicallyAndSkipsSameContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etcd-servers")
	changed, err := WriteFile(path, []byte("a\n"))
	if err != nil || !changed {
		t.Fatalf("first write: changed %v err %v", changed, err)
	}
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", info.Mode().Perm())
	}
	if changed, err := WriteFile(path, []byte("a\n")); err != nil || changed {
		t.Fatalf("same content: changed %v err %v, want no change", changed, err)
	}
	if changed, err := WriteFile(path, []byte("b\n")); err != nil || !changed {
		t.Fatalf("new content: changed %v err %v", changed, err)
	}
	if got, _ := os.ReadFile(path); string(got) != "b\n" {
		t.Fatalf("got %q, want b", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestWriteFileIntoAMissingDirFailsAndNamesThePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "etcd-servers")
	if _, err := WriteFile(path, []byte("x")); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v, want an error naming %s", err, path)
	}
}
