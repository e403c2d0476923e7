package supervisor

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheckFreeCountsDirsOnOneFilesystemTogether(t *testing.T) {
	data, snaps := t.TempDir(), t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(data, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	if err := checkFree(map[string]int64{data: free / 10, snaps: free / 10}, "test"); err != nil {
		t.Errorf("a fifth of the free space: %v", err)
	}
	// Each fits alone; together, on one filesystem, they do not.
	err := checkFree(map[string]int64{data: free * 6 / 10, snaps: free * 6 / 10}, "for the test")
	if err == nil {
		t.Fatal("1.2 times the free space was accepted")
	}
	for _, want := range []string{data, snaps, "short of", "for the test"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if err := checkFree(map[string]int64{data + "/missing": 1}, "test"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing dir: %v", err)
	}
}
