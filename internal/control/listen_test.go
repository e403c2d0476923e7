package control

import (
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestListenRefusesWhenALiveServerAnswers(t *testing.T) {
	ts := listenAndServe(t, selfPolicy())

	ln, err := Listen(ts.path, 0o600, -1)
	if err == nil {
		ln.Close()
		t.Fatal("second Listen on a live socket succeeded, want an error")
	}
	want := "control socket " + ts.path + " is in use by another process (is another etcdvisor running?)"
	if err.Error() != want {
		t.Errorf("got error %q, want %q", err, want)
	}

	var out map[string]string
	if err := NewClient(ts.path).Get(context.Background(), "/v1/status", &out); err != nil {
		t.Fatalf("live server no longer answers after the refused Listen: %v", err)
	}
}

func TestListenRemovesAStaleSocketAndServes(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "etcdvisor.sock")
	// A crashed daemon leaves its socket file behind with nobody listening.
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("setup: want a stale socket at %s, got %v, %v", path, fi, err)
	}
	if err := NewClient(path).Get(context.Background(), "/v1/status", nil); !IsUnreachable(err) {
		t.Fatalf("setup: stale socket answered: %v", err)
	}

	ln, err := Listen(path, 0o600, -1)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ts := serve(t, ln, selfPolicy())

	var out map[string]string
	if err := NewClient(ts.path).Get(context.Background(), "/v1/status", &out); err != nil {
		t.Fatalf("GET /v1/status: %v", err)
	}
	if out["phase"] != "running" {
		t.Errorf("got %v, want phase running", out)
	}
}

func TestListenRefusesToRemoveWhatIsNotASocket(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
		check func(t *testing.T, path string)
		want  string
	}{
		{
			name: "regular file",
			setup: func(t *testing.T, path string) {
				if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, path string) {
				if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
					t.Errorf("file after Listen: got %q, %v; want it untouched", b, err)
				}
			},
			want: "is a regular file, not a socket; refusing to remove it",
		},
		{
			name: "directory",
			setup: func(t *testing.T, path string) {
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, path string) {
				if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
					t.Errorf("directory after Listen: got %v, %v; want it untouched", fi, err)
				}
			},
			want: "is a directory, not a socket; refusing to remove it",
		},
		{
			name: "dangling symlink",
			setup: func(t *testing.T, path string) {
				if err := os.Symlink(path+".gone", path); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, path string) {
				if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSymlink {
					t.Errorf("symlink after Listen: got %v, %v; want it untouched", fi, err)
				}
			},
			want: "is a symbolic link, not a socket; refusing to remove it",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(shortTempDir(t), "etcdvisor.sock")
			tt.setup(t, path)

			ln, err := Listen(path, 0o600, -1)
			if err == nil {
				ln.Close()
				t.Fatal("Listen succeeded, want an error")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to name %s and say %q", err, path, tt.want)
			}
			tt.check(t, path)
		})
	}
}

func TestListenFailsWhenTheParentDirectoryIsMissing(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "missing", "etcdvisor.sock")
	ln, err := Listen(path, 0o600, -1)
	if err == nil {
		ln.Close()
		t.Fatal("Listen succeeded, want an error")
	}
	want := "directory " + filepath.Dir(path) + " for control socket " + path + " does not exist"
	if err.Error() != want {
		t.Errorf("got error %q, want %q", err, want)
	}
}

func TestListenSetsModeAndGroupAndRemovesTheSocketOnClose(t *testing.T) {
	// Root may give the socket any group; anyone else only one of their own.
	group := os.Getegid()
	if os.Geteuid() == 0 {
		group = 65534
	}
	tests := []struct {
		name     string
		mode     os.FileMode
		gid      int
		wantMode os.FileMode
		wantGID  int
	}{
		{name: "no group", mode: 0o600, gid: -1, wantMode: 0o600, wantGID: os.Getegid()},
		{name: "with a group", mode: 0o660, gid: group, wantMode: 0o660, wantGID: group},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(shortTempDir(t), "etcdvisor.sock")
			ln, err := Listen(path, tt.mode, tt.gid)
			if err != nil {
				t.Fatalf("Listen: %v", err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				ln.Close()
				t.Fatal(err)
			}
			if got := fi.Mode().Type(); got != fs.ModeSocket {
				t.Errorf("got file type %v, want a socket", got)
			}
			if got := fi.Mode().Perm(); got != tt.wantMode {
				t.Errorf("got mode %#o, want %#o", got, tt.wantMode)
			}
			if got := int(fi.Sys().(*syscall.Stat_t).Gid); got != tt.wantGID {
				t.Errorf("got gid %d, want %d", got, tt.wantGID)
			}

			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Errorf("socket still there after Close: %v", err)
			}
		})
	}
}
