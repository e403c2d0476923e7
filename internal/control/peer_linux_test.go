package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const (
	nobody        = 65534
	helperEnv     = "ETCDVISOR_CONTROL_TEST_HELPER"
	helperSockEnv = "ETCDVISOR_CONTROL_TEST_SOCKET"
)

// TestHelperProcess is not a test: TestServerChecksTheCallersRealCredentials
// runs the test binary again, as another user, with helperEnv set, and this
// function then acts as a client and prints what the server answered.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "get" {
		return
	}
	code := http.StatusOK
	msg := ""
	err := NewClient(os.Getenv(helperSockEnv)).Get(context.Background(), "/v1/status", nil)
	var apiErr *APIError
	switch {
	case errors.As(err, &apiErr):
		code, msg = apiErr.Code, apiErr.Message
	case err != nil:
		code, msg = -1, err.Error()
	}
	fmt.Printf("helper-status=%d\nhelper-message=%s\n", code, msg)
}

func TestServerChecksTheCallersRealCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test runs a client as uid 65534 (nobody), and only root may switch to another uid")
	}
	tests := []struct {
		name       string
		policy     Policy
		wantCode   int
		wantMsg    string
		wantCalled bool
	}{
		{
			name:     "another uid is denied",
			policy:   Policy{UIDs: []uint32{0}, GID: -1},
			wantCode: 403,
			wantMsg:  "permission denied: uid 65534 is not root or the daemon's uid",
		},
		{
			name:     "another uid outside the control group is denied",
			policy:   Policy{UIDs: []uint32{0}, GID: 997},
			wantCode: 403,
			wantMsg:  "permission denied: uid 65534 is not root, the daemon's uid or in group 997",
		},
		{name: "a caller whose primary group is the control group is allowed", policy: Policy{GID: nobody}, wantCode: 200, wantCalled: true},
		{name: "a caller whose uid is listed is allowed", policy: Policy{UIDs: []uint32{nobody}, GID: -1}, wantCode: 200, wantCalled: true},
	}
	// The test binary usually sits in a directory only root may enter; then
	// it is copied, once, to one nobody can read. The copy lives as long as
	// this test, not just one subtest.
	bin := os.Args[0]
	copyBin := func() (string, error) {
		dir, err := os.MkdirTemp("", "ctlbin")
		if err != nil {
			return "", err
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return copyExecutable(bin, dir)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The socket is wide open so that only Policy stands between
			// nobody and the handler.
			dir := shortTempDir(t)
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			ln, err := Listen(filepath.Join(dir, "etcdvisor.sock"), 0o666, -1)
			if err != nil {
				t.Fatalf("Listen: %v", err)
			}
			ts := serve(t, ln, tt.policy)

			code, msg := runHelperAsNobody(t, &bin, copyBin, ts.path)
			if code != tt.wantCode || msg != tt.wantMsg {
				t.Errorf("got (%d, %q), want (%d, %q)", code, msg, tt.wantCode, tt.wantMsg)
			}
			if called := ts.called.Load() > 0; called != tt.wantCalled {
				t.Errorf("handler called: got %v, want %v", called, tt.wantCalled)
			}
			if tt.wantCalled {
				return
			}

			denied := ts.logs.FilterMessage("control request denied").All()
			if len(denied) != 1 {
				t.Fatalf("got %d %q log lines, want 1: %v", len(denied), "control request denied", ts.logs.All())
			}
			f := denied[0].ContextMap()
			for key, want := range map[string]string{
				"peer-uid": "65534",
				"peer-gid": "65534",
				"method":   "GET",
				"path":     "/v1/status",
				"reason":   strings.TrimPrefix(tt.wantMsg, "permission denied: "),
			} {
				if got := fmt.Sprint(f[key]); got != want {
					t.Errorf("denied log %s = %q, want %q", key, got, want)
				}
			}
			if pid, _ := strconv.Atoi(fmt.Sprint(f["peer-pid"])); pid <= 0 {
				t.Errorf("denied log peer-pid = %v, want the client's pid", f["peer-pid"])
			}
		})
	}
}

// runHelperAsNobody runs TestHelperProcess from the binary *bin as uid and
// gid 65534 against the socket at sock and returns the status and message it
// printed. If nobody may not run *bin, it runs the copy that copyBin makes
// and keeps using it.
func runHelperAsNobody(t *testing.T, bin *string, copyBin func() (string, error), sock string) (code int, msg string) {
	t.Helper()
	out, err := helperCommand(*bin, sock).CombinedOutput()
	if errors.Is(err, syscall.EACCES) {
		t.Logf("nobody may not run %s (%v); running a copy", *bin, err)
		if *bin, err = copyBin(); err != nil {
			t.Fatalf("copying the test binary where nobody may run it: %v", err)
		}
		out, err = helperCommand(*bin, sock).CombinedOutput()
	}
	if err != nil {
		t.Fatalf("running the helper as nobody: %v\n%s", err, out)
	}
	code = -2
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "helper-status="); ok {
			code, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(sc.Text(), "helper-message="); ok {
			msg = v
		}
	}
	if code == -2 {
		t.Fatalf("helper printed no status:\n%s", out)
	}
	return code, msg
}

func helperCommand(bin, sock string) *exec.Cmd {
	cmd := exec.Command(bin, "-test.run=^TestHelperProcess$")
	cmd.Dir = "/" // nobody may not be able to enter the package directory
	for _, kv := range os.Environ() {
		// nobody cannot write root's coverage directory.
		if !strings.HasPrefix(kv, "GOCOVERDIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// GORACE: a -race binary otherwise sleeps a second before it exits.
	cmd.Env = append(cmd.Env, helperEnv+"=get", helperSockEnv+"="+sock, "GORACE=atexit_sleep_ms=0")
	// Groups is empty, so the child also drops root's supplementary groups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	return cmd
}

// copyExecutable copies the executable at src into dir, makes both
// readable and runnable by everyone, and returns the copy's path.
func copyExecutable(src, dir string) (string, error) {
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, filepath.Base(src))
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return dst, os.Chmod(dst, 0o755) // undo the umask
}
