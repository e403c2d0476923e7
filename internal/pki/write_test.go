package pki

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestWritePairRefusesToOverwriteWithoutForce(t *testing.T) {
	ca := newTestCA(t, CACommonName)
	first := mustIssue(t, ca, Request{Kind: Client, CommonName: "first"})
	second := mustIssue(t, ca, Request{Kind: Client, CommonName: "second"})

	tests := []struct {
		name     string
		existing []string // files present before the write
		want     string   // the file the error names
	}{
		{name: "both files exist", existing: []string{"p.crt", "p.key"}, want: "p.crt"},
		{name: "only the key exists", existing: []string{"p.key"}, want: "p.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, name := range tt.existing {
				data := first.CertPEM
				if strings.HasSuffix(name, ".key") {
					data = first.KeyPEM
				}
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := WritePair(dir, "p", second, false)
			want := filepath.Join(dir, tt.want) + " already exists"
			if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v, want ErrExists containing %q", err, want)
			}
			for _, name := range tt.existing {
				got, _ := os.ReadFile(filepath.Join(dir, name))
				if bytes.Equal(got, second.CertPEM) || bytes.Equal(got, second.KeyPEM) {
					t.Fatalf("got %s overwritten, want it unchanged", name)
				}
			}
			assertOnlyFiles(t, dir, tt.existing...)
		})
	}
}

func TestWritePairWithForceReplacesBothFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, CACommonName)
	writeTestPair(t, dir, "p", mustIssue(t, ca, Request{Kind: Client, CommonName: "first"}))
	second := mustIssue(t, ca, Request{Kind: Client, CommonName: "second"})
	certPath, keyPath, err := WritePair(dir, "p", second, true)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]byte{certPath: second.CertPEM, keyPath: second.KeyPEM} {
		if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
			t.Fatalf("got old contents in %s, want the new pair", path)
		}
	}
	assertOnlyFiles(t, dir, "p.crt", "p.key")
}

func TestWritePairSetsModesWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "new")
	certPath, keyPath := writeTestPair(t, dir, "p", mustIssue(t, newTestCA(t, CACommonName), Request{Kind: Client, CommonName: "p"}))
	tests := []struct {
		name string
		path string
		want os.FileMode
	}{
		{"key", keyPath, 0o600},
		{"cert", certPath, 0o644},
	}
	for _, tt := range tests {
		fi, err := os.Stat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tt.want {
			t.Errorf("%s: got mode %#o, want %#o", tt.name, got, tt.want)
		}
	}
}

func TestWritePairRefusesANameWithADirectory(t *testing.T) {
	kp := mustIssue(t, newTestCA(t, CACommonName), Request{Kind: Client, CommonName: "p"})
	for _, name := range []string{"", "..", "a/b", "../p"} {
		if _, _, err := WritePair(t.TempDir(), name, kp, false); err == nil {
			t.Errorf("name %q: got no error, want one", name)
		}
	}
}

// assertOnlyFiles checks dir holds exactly names: no temporary files left.
func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := slices.Sorted(slices.Values(names))
	if !slices.Equal(got, want) {
		t.Fatalf("got files %q in %s, want %q", got, dir, want)
	}
}
