package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// clientHost is the Host header the client sends. The server also accepts
// "localhost" (as curl --unix-socket sends) and an empty Host (HTTP/1.0).
const clientHost = "etcdvisor"

// maxBodyBytes limits request bodies read by DecodeJSON and error bodies read
// by Client.
const maxBodyBytes = 1 << 20

// Server serves the control API. Every request passes the checks in
// serveHTTP before its route handler runs.
type Server struct {
	lg     *zap.Logger
	policy Policy
	mux    *http.ServeMux
	hs     *http.Server
}

// NewServer returns a Server that admits callers by policy and logs to
// lg.Named("control"). Register routes with Handle, then call Serve.
func NewServer(lg *zap.Logger, policy Policy) *Server {
	if lg == nil {
		lg = zap.NewNop()
	}
	lg = lg.Named("control")
	s := &Server{lg: lg, policy: policy, mux: http.NewServeMux()}
	errLog, err := zap.NewStdLogAt(lg, zap.WarnLevel)
	if err != nil {
		panic(err) // only for an invalid level, which WarnLevel is not
	}
	s.hs = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ConnContext:       s.connContext,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
	}
	return s
}

// Handle registers h for method and path, such as ("GET", "/v1/status").
// path must be under /v1/ and may use http.ServeMux wildcards
// ("/v1/members/{id}"). Like http.ServeMux, Handle panics on a bad or
// conflicting route: that is a programming error.
func (s *Server) Handle(method, path string, h http.HandlerFunc) {
	if method == "" || strings.ToUpper(method) != method || strings.ContainsAny(method, " \t") {
		panic(fmt.Sprintf("control: bad method %q for %s", method, path))
	}
	if !strings.HasPrefix(path, "/v1/") {
		panic(fmt.Sprintf("control: route %s %s is not under /v1/", method, path))
	}
	s.mux.HandleFunc(method+" "+path, h)
}

// Serve accepts connections on ln until Shutdown, then returns nil. It closes
// ln, which removes a socket made by Listen.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving control API on %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for requests in flight to
// finish or ctx to end, as http.Server.Shutdown does.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.hs.Shutdown(ctx)
}

// connContext reads the caller's credentials once per connection.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	peer, err := readPeer(c)
	if err != nil {
		s.lg.Warn("cannot read control caller's credentials", zap.Error(err))
		return ctx
	}
	return withPeer(ctx, peer)
}

// serveHTTP checks, in order, that the request does not come from a browser,
// that its Host is expected and that Policy admits the caller, then routes it.
// Unknown routes get 404 and known routes with another method 405, as JSON.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	peer, havePeer := PeerFrom(r.Context())
	fields := func(reason string) []zap.Field {
		f := []zap.Field{
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.String("reason", reason),
		}
		if havePeer {
			f = append(f, zap.Uint32("peer-uid", peer.UID), zap.Uint32("peer-gid", peer.GID), zap.Int32("peer-pid", peer.PID))
		}
		return f
	}

	// A browser can be made to talk to local services (DNS rebinding, a
	// proxy on localhost); it always sends one of these, and the CLI never
	// does.
	if reason := browserReason(r); reason != "" {
		s.lg.Warn("control request refused", fields(reason)...)
		WriteError(w, http.StatusForbidden, "forbidden: %s", reason)
		return
	}
	if !validHost(r.Host) {
		reason := fmt.Sprintf("unexpected Host %q (want %q)", r.Host, clientHost)
		s.lg.Warn("control request refused", fields(reason)...)
		WriteError(w, http.StatusForbidden, "forbidden: %s", reason)
		return
	}

	var (
		ok     bool
		reason = "the caller's credentials could not be read"
	)
	if havePeer {
		ok, reason = s.policy.Allow(peer)
	}
	if !ok {
		s.lg.Warn("control request denied", fields(reason)...)
		WriteError(w, http.StatusForbidden, "permission denied: %s", reason)
		return
	}
	s.lg.Debug("control request allowed", fields(reason)...)

	// The mux answers unknown routes and wrong methods in plain text; catch
	// those (an empty pattern) and answer in JSON like everything else.
	if h, pattern := s.mux.Handler(r); pattern == "" {
		rec := &headerRecorder{header: make(http.Header)}
		h.ServeHTTP(rec, r)
		switch rec.code {
		case http.StatusNotFound:
			WriteError(w, http.StatusNotFound, "no such endpoint: %s", r.URL.Path)
			return
		case http.StatusMethodNotAllowed:
			allow := rec.header.Get("Allow")
			w.Header().Set("Allow", allow)
			WriteError(w, http.StatusMethodNotAllowed, "method %s is not allowed for %s (allowed: %s)", r.Method, r.URL.Path, allow)
			return
		}
		// Anything else is a redirect to the cleaned path; let the mux do it.
	}
	s.mux.ServeHTTP(w, r)
}

// browserReason returns why r looks like it came from a browser, or "".
func browserReason(r *http.Request) string {
	if r.Header.Get("Origin") != "" {
		return "request has an Origin header; browsers may not use the control API"
	}
	if r.Header.Get("Referer") != "" {
		return "request has a Referer header; browsers may not use the control API"
	}
	for k := range r.Header {
		if strings.HasPrefix(k, "Sec-Fetch-") {
			return fmt.Sprintf("request has a %s header; browsers may not use the control API", k)
		}
	}
	return ""
}

// validHost reports whether host, with any port removed, is one the control
// API answers to.
func validHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	switch host {
	case clientHost, "localhost", "":
		return true
	}
	return false
}

// headerRecorder catches the status and headers of the mux's own 404 and 405
// answers and discards their bodies.
type headerRecorder struct {
	header http.Header
	code   int
}

func (r *headerRecorder) Header() http.Header { return r.header }

func (r *headerRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return len(b), nil
}

func (r *headerRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

// WriteJSON answers with status code and v encoded as JSON. If v cannot be
// encoded it answers 500 with an error body instead.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "encoding response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	// A failed write means the caller has gone; there is no one to tell.
	_, _ = w.Write(append(b, '\n'))
}

// WriteError answers with status code and the body {"error": "..."}, the
// message formatted as by fmt.Sprintf. Client returns it as APIError.Message.
func WriteError(w http.ResponseWriter, code int, format string, args ...any) {
	WriteJSON(w, code, errorBody{Error: fmt.Sprintf(format, args...)})
}

// DecodeJSON decodes the request body, one JSON value of at most 1 MiB, into
// v. It is strict: unknown fields, data after the value and, for POST, PUT and
// PATCH, an empty body are errors. Its errors name the problem and are meant
// for the caller:
//
//	if err := control.DecodeJSON(r, &req); err != nil {
//		control.WriteError(w, http.StatusBadRequest, "%v", err)
//		return
//	}
func DecodeJSON(r *http.Request, v any) error {
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
		if err != nil {
			return fmt.Errorf("reading request body: %w", err)
		}
	}
	if len(body) > maxBodyBytes {
		return fmt.Errorf("request body is larger than %d bytes (1 MiB)", maxBodyBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			return errors.New("request body is empty; want a JSON object")
		}
		return nil
	}

	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if rest := bytes.TrimSpace(body[dec.InputOffset():]); len(rest) > 0 {
		return fmt.Errorf("request body has data after the JSON value, at byte %d", len(body)-len(rest))
	}
	return nil
}

// describeJSONError rewords encoding/json's errors for the API's caller.
func describeJSONError(err error) error {
	var (
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
		invalid   *json.InvalidUnmarshalError
	)
	switch {
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("request body is not valid JSON: %s (at byte %d)", strings.TrimPrefix(syntaxErr.Error(), "json: "), syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("request body is not valid JSON: it ends in the middle of a value")
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return fmt.Errorf("request body field %q: cannot use a JSON %s as %s", typeErr.Field, typeErr.Value, typeErr.Type)
	case errors.As(err, &typeErr):
		return fmt.Errorf("request body: cannot use a JSON %s as %s", typeErr.Value, typeErr.Type)
	case errors.As(err, &invalid):
		return err // the handler passed a bad target; a programming error
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("request body has unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return fmt.Errorf("request body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}
