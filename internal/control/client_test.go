package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestClientReportsAMissingSocketAsUnreachable(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "etcdvisor.sock")

	err := NewClient(path).Get(context.Background(), "/v1/status", nil)
	if !IsUnreachable(err) {
		t.Fatalf("got %T %v, want an UnreachableError", err, err)
	}
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Path != path {
		t.Fatalf("got %#v, want Path %s", err, path)
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("error %v does not wrap ENOENT", err)
	}
	want := `cannot reach etcdvisor at ` + path + `: is "etcdvisor run" running? (connect: no such file or directory)`
	if err.Error() != want {
		t.Errorf("got error %q, want %q", err, want)
	}
}

func TestUnreachableErrorSaysHowToFixIt(t *testing.T) {
	const path = "./etcdvisor-data/etcdvisor.sock"
	dialErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"},
			Err: os.NewSyscallError("connect", errno)}
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{
			name: "no socket",
			err:  dialErr(syscall.ENOENT),
			want: `cannot reach etcdvisor at ./etcdvisor-data/etcdvisor.sock: is "etcdvisor run" running? (connect: no such file or directory)`,
		},
		{
			name: "nobody listening",
			err:  dialErr(syscall.ECONNREFUSED),
			want: `cannot reach etcdvisor at ./etcdvisor-data/etcdvisor.sock: is "etcdvisor run" running? (connect: connection refused)`,
		},
		{
			name: "not allowed",
			err:  dialErr(syscall.EACCES),
			want: `cannot reach etcdvisor at ./etcdvisor-data/etcdvisor.sock: permission denied: run as root or as the daemon's user/group`,
		},
		{
			name: "no cause",
			want: `cannot reach etcdvisor at ./etcdvisor-data/etcdvisor.sock: is "etcdvisor run" running?`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := error(&UnreachableError{Path: path, Err: tt.err})
			if got := err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !IsUnreachable(err) {
				t.Error("IsUnreachable is false")
			}
		})
	}
}

func TestClientDoesNotCallACanceledContextUnreachable(t *testing.T) {
	ts := listenAndServe(t, selfPolicy())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	err := NewClient(ts.path).Get(ctx, "/v1/status", nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if IsUnreachable(err) {
		t.Errorf("got UnreachableError %v for a canceled context", err)
	}
}
