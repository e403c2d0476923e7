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
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// Client calls a daemon's control API over its unix socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a Client for the socket at socketPath. It does not
// connect until the first call.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{
		// Every request goes to the socket, whatever the URL says. Proxy is
		// left nil so HTTP_PROXY and friends are never consulted.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", socketPath)
			if err != nil && ctx.Err() == nil {
				return nil, &UnreachableError{Path: socketPath, Err: err}
			}
			return c, err
		},
		DisableCompression: true,
		MaxIdleConns:       2,
		IdleConnTimeout:    30 * time.Second,
	}
	return &Client{path: socketPath, hc: &http.Client{Transport: tr}}
}

// Get calls GET path (such as "/v1/status") and decodes the JSON answer into
// out, unless out is nil.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// Post calls POST path with in encoded as JSON ({} when in is nil) and
// decodes the JSON answer into out, unless out is nil.
func (c *Client) Post(ctx context.Context, path string, in, out any) error {
	body := []byte("{}")
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encoding request to POST %s: %w", path, err)
		}
	}
	return c.do(ctx, http.MethodPost, path, body, out)
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+clientHost+path, rd)
	if err != nil {
		return fmt.Errorf("building request %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *UnreachableError
		if errors.As(err, &ue) {
			return ue
		}
		// Drop url.Error's `Get "http://etcdvisor/v1/x":` prefix; the URL's
		// host is not where the request went.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return fmt.Errorf("%s %s via %s: %w", method, path, c.path, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readAPIError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body) // lets the connection be reused
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding answer to %s %s: %w", method, path, err)
	}
	return nil
}

// readAPIError turns a non-2xx answer into an APIError, preferring the
// server's JSON error text.
func readAPIError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	var eb errorBody
	msg := ""
	if json.Unmarshal(b, &eb) == nil {
		msg = eb.Error
	}
	if msg == "" {
		msg = strings.TrimSpace(string(b))
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &APIError{Code: resp.StatusCode, Message: msg}
}

// UnreachableError means the client could not connect to the socket at Path:
// no daemon is running there, or the caller may not use it.
type UnreachableError struct {
	Path string
	Err  error
}

func (e *UnreachableError) Error() string {
	if errors.Is(e.Err, syscall.EACCES) || errors.Is(e.Err, syscall.EPERM) {
		return fmt.Sprintf("cannot reach etcdvisor at %s: permission denied: run as root or as the daemon's user/group", e.Path)
	}
	msg := fmt.Sprintf("cannot reach etcdvisor at %s: is \"etcdvisor run\" running?", e.Path)
	if e.Err == nil {
		return msg
	}
	// Show "connect: no such file or directory", not net.OpError's
	// "dial unix PATH: ..." that repeats the path.
	cause := e.Err
	var se *os.SyscallError
	if errors.As(e.Err, &se) {
		cause = se
	}
	return fmt.Sprintf("%s (%v)", msg, cause)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// IsUnreachable reports whether err, or an error it wraps, is an
// UnreachableError.
func IsUnreachable(err error) bool {
	var ue *UnreachableError
	return errors.As(err, &ue)
}

// APIError is a non-2xx answer from the daemon. Message is the server's
// JSON error text (or the body, or the status text, when there is none).
type APIError struct {
	Code    int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Code)
}
