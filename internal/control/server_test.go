package control

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
)

func TestClientGetsARegisteredRouteEndToEnd(t *testing.T) {
	ts := listenAndServe(t, selfPolicy())

	var out struct {
		Phase string `json:"phase"`
	}
	if err := NewClient(ts.path).Get(context.Background(), "/v1/status", &out); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if out.Phase != "running" {
		t.Errorf("got phase %q, want running", out.Phase)
	}
	if got := ts.called.Load(); got != 1 {
		t.Errorf("handler called %d times, want 1", got)
	}

	allowed := ts.logs.FilterMessage("control request allowed").All()
	if len(allowed) != 1 || allowed[0].Level != zapcore.DebugLevel {
		t.Fatalf("got allow log entries %v, want one at debug level", allowed)
	}
	fields := allowed[0].ContextMap()
	if _, ok := fields["peer-uid"]; !ok {
		t.Errorf("allow log has no peer-uid: %v", fields)
	}
	if fields["path"] != "/v1/status" || fields["reason"] == "" {
		t.Errorf("allow log fields %v, want path /v1/status and a reason", fields)
	}
}

func TestClientPostsAndDecodesTheAnswer(t *testing.T) {
	ts := listenAndServe(t, selfPolicy())

	var out struct {
		Name string `json:"name"`
	}
	in := map[string]string{"name": "m1"}
	if err := NewClient(ts.path).Post(context.Background(), "/v1/echo", in, &out); err != nil {
		t.Fatalf("Post: %v", err)
	}
	if out.Name != "m1" {
		t.Errorf("got name %q, want m1", out.Name)
	}
}

func TestServerRefusesBrowsersAndUnexpectedHosts(t *testing.T) {
	tests := []struct {
		name       string
		req        string
		wantCode   int
		wantErr    string // substring of the JSON error
		wantCalled bool
	}{
		{name: "the client's host is served", req: get("Host: etcdvisor"), wantCode: 200, wantCalled: true},
		{name: "localhost is served", req: get("Host: localhost"), wantCode: 200, wantCalled: true},
		{name: "localhost with a port is served", req: get("Host: localhost:80"), wantCode: 200, wantCalled: true},
		{name: "an empty host is served", req: "GET /v1/status HTTP/1.0\r\n\r\n", wantCode: 200, wantCalled: true},
		{
			name:     "an Origin header is refused",
			req:      get("Host: etcdvisor", "Origin: http://evil.example"),
			wantCode: 403, wantErr: "forbidden: request has an Origin header",
		},
		{
			name:     "a Referer header is refused",
			req:      get("Host: etcdvisor", "Referer: http://evil.example/page"),
			wantCode: 403, wantErr: "forbidden: request has a Referer header",
		},
		{
			name:     "a Sec-Fetch header is refused",
			req:      get("Host: etcdvisor", "Sec-Fetch-Site: cross-site"),
			wantCode: 403, wantErr: "forbidden: request has a Sec-Fetch-Site header",
		},
		{
			name:     "another host is refused",
			req:      get("Host: evil.example"),
			wantCode: 403, wantErr: `forbidden: unexpected Host "evil.example"`,
		},
		{
			name:     "a loopback address as host is refused",
			req:      get("Host: 127.0.0.1:8080"),
			wantCode: 403, wantErr: `forbidden: unexpected Host "127.0.0.1:8080"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := listenAndServe(t, selfPolicy())

			code, errText := rawRequest(t, ts.path, tt.req)
			if code != tt.wantCode {
				t.Errorf("got status %d (%q), want %d", code, errText, tt.wantCode)
			}
			if !strings.Contains(errText, tt.wantErr) {
				t.Errorf("got error %q, want it to contain %q", errText, tt.wantErr)
			}
			if called := ts.called.Load() > 0; called != tt.wantCalled {
				t.Errorf("handler called: got %v, want %v", called, tt.wantCalled)
			}
			if !tt.wantCalled && ts.logs.FilterMessage("control request refused").Len() != 1 {
				t.Errorf("want one %q log line, got %v", "control request refused", ts.logs.All())
			}
		})
	}
}

func TestServerAnswersRoutingAndBodyErrorsInJSON(t *testing.T) {
	post := func(body string) string {
		return "POST /v1/echo HTTP/1.1\r\nHost: etcdvisor\r\nContent-Type: application/json\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
	}
	tests := []struct {
		name     string
		req      string
		wantCode int
		wantErr  string // substring of the JSON error
	}{
		{
			name:     "an unknown route is 404",
			req:      "GET /v1/nope HTTP/1.1\r\nHost: etcdvisor\r\nConnection: close\r\n\r\n",
			wantCode: 404, wantErr: "no such endpoint: /v1/nope",
		},
		{
			name:     "a route outside v1 is 404",
			req:      "GET /status HTTP/1.1\r\nHost: etcdvisor\r\nConnection: close\r\n\r\n",
			wantCode: 404, wantErr: "no such endpoint: /status",
		},
		{
			name:     "the wrong method is 405",
			req:      "DELETE /v1/status HTTP/1.1\r\nHost: etcdvisor\r\nConnection: close\r\n\r\n",
			wantCode: 405, wantErr: "method DELETE is not allowed for /v1/status (allowed: GET, HEAD)",
		},
		{name: "a well-formed body is accepted", req: post(`{"name":"m1"}`), wantCode: 200},
		{name: "malformed JSON is 400", req: post(`{"name":`), wantCode: 400, wantErr: "request body is not valid JSON"},
		{name: "a syntax error is 400", req: post(`{"name" "m1"}`), wantCode: 400, wantErr: "request body is not valid JSON: invalid character"},
		{name: "an unknown field is 400", req: post(`{"name":"m1","bogus":1}`), wantCode: 400, wantErr: `request body has unknown field "bogus"`},
		{name: "a wrong type is 400", req: post(`{"name":7}`), wantCode: 400, wantErr: `request body field "name": cannot use a JSON number as string`},
		{name: "trailing data is 400", req: post(`{"name":"m1"} {}`), wantCode: 400, wantErr: "request body has data after the JSON value, at byte 14"},
		{name: "an empty body is 400", req: post(""), wantCode: 400, wantErr: "request body is empty; want a JSON object"},
		{name: "a body over 1 MiB is 400", req: post(`{"name":"` + strings.Repeat("x", 1<<20) + `"}`), wantCode: 400, wantErr: "request body is larger than 1048576 bytes (1 MiB)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := listenAndServe(t, selfPolicy())

			code, errText := rawRequest(t, ts.path, tt.req)
			if code != tt.wantCode {
				t.Errorf("got status %d (%q), want %d", code, errText, tt.wantCode)
			}
			if !strings.Contains(errText, tt.wantErr) {
				t.Errorf("got error %q, want it to contain %q", errText, tt.wantErr)
			}
		})
	}
}

func TestClientReturnsTheServersErrorAsAPIError(t *testing.T) {
	ts := listenAndServe(t, selfPolicy())
	c := NewClient(ts.path)
	ctx := context.Background()

	tests := []struct {
		name     string
		call     func() error
		wantCode int
		wantMsg  string
	}{
		{
			name:     "unknown route",
			call:     func() error { return c.Get(ctx, "/v1/nope", nil) },
			wantCode: http.StatusNotFound, wantMsg: "no such endpoint: /v1/nope",
		},
		{
			name:     "wrong method",
			call:     func() error { return c.Post(ctx, "/v1/status", nil, nil) },
			wantCode: http.StatusMethodNotAllowed, wantMsg: "method POST is not allowed for /v1/status (allowed: GET, HEAD)",
		},
		{
			name:     "unknown field",
			call:     func() error { return c.Post(ctx, "/v1/echo", map[string]any{"bogus": true}, nil) },
			wantCode: http.StatusBadRequest, wantMsg: `request body has unknown field "bogus"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("got %T %v, want *APIError", err, err)
			}
			if apiErr.Code != tt.wantCode || apiErr.Message != tt.wantMsg {
				t.Errorf("got (%d, %q), want (%d, %q)", apiErr.Code, apiErr.Message, tt.wantCode, tt.wantMsg)
			}
			if IsUnreachable(err) {
				t.Error("IsUnreachable is true for an answer from the server")
			}
		})
	}
}

func TestHandleRejectsRoutesOutsideV1(t *testing.T) {
	s := NewServer(nil, selfPolicy())
	defer func() {
		if recover() == nil {
			t.Error("Handle accepted /status, want a panic")
		}
	}()
	s.Handle("GET", "/status", func(http.ResponseWriter, *http.Request) {})
}

func TestShutdownEndsServeAndRemovesTheSocket(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "etcdvisor.sock")
	ln, err := Listen(path, 0o600, -1)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	s := NewServer(nil, selfPolicy())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	if err := NewClient(path).Get(context.Background(), "/v1/nope", nil); IsUnreachable(err) {
		t.Fatalf("server did not come up: %v", err)
	}

	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve returned %v after Shutdown, want nil", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Shutdown: %v", err)
	}
}
