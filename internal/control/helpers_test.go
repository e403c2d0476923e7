package control

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// shortTempDir returns a fresh directory with a short path: t.TempDir()
// includes the test name and can push a socket path past 108 bytes.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// selfPolicy admits root and the test's own uid, and no group.
func selfPolicy() Policy {
	return Policy{UIDs: []uint32{uint32(os.Geteuid())}, GID: -1}
}

// testServer is a Server running on a real socket for the length of a test.
type testServer struct {
	path   string
	logs   *observer.ObservedLogs
	called atomic.Int32 // requests that reached a route handler
}

// serve runs a Server with policy on ln and these routes:
//
//	GET  /v1/status  answers {"phase":"running"}
//	POST /v1/echo    decodes {"name": string} strictly and answers it back
func serve(t *testing.T, ln net.Listener, policy Policy) *testServer {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	ts := &testServer{path: ln.Addr().String(), logs: logs}
	s := NewServer(zap.New(core), policy)
	s.Handle("GET", "/v1/status", func(w http.ResponseWriter, r *http.Request) {
		ts.called.Add(1)
		WriteJSON(w, http.StatusOK, map[string]string{"phase": "running"})
	})
	s.Handle("POST", "/v1/echo", func(w http.ResponseWriter, r *http.Request) {
		ts.called.Add(1)
		var req struct {
			Name string `json:"name"`
		}
		if err := DecodeJSON(r, &req); err != nil {
			WriteError(w, http.StatusBadRequest, "%v", err)
			return
		}
		WriteJSON(w, http.StatusOK, req)
	})

	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", err)
		}
	})
	return ts
}

// listenAndServe listens on a fresh socket with mode 0600 and serves on it.
func listenAndServe(t *testing.T, policy Policy) *testServer {
	t.Helper()
	ln, err := Listen(filepath.Join(shortTempDir(t), "etcdvisor.sock"), 0o600, -1)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	return serve(t, ln, policy)
}

// rawRequest sends req, a literal HTTP request, over the socket at path and
// returns the status code and the JSON error text of the answer.
func rawRequest(t *testing.T, path, req string) (code int, errText string) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json (body %q)", ct, b)
	}
	var eb errorBody
	if resp.StatusCode >= 300 {
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error == "" {
			t.Errorf("error answer %q is not {\"error\": \"...\"}: %v", b, err)
		}
	}
	return resp.StatusCode, eb.Error
}

// get builds a raw GET /v1/status request with extra header lines.
func get(headers ...string) string {
	var b strings.Builder
	b.WriteString("GET /v1/status HTTP/1.1\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.String()
}
