// Package endpoints tells kube-apiserver and load balancers where etcd is:
// the --etcd-servers value, a load-balancer backend, and a file of them
// kept current as the member list changes.
package endpoints

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

// EtcdServers is the value for kube-apiserver's --etcd-servers: the client
// URLs of the voting members, in member-list order. Learners are left out
// because they refuse the requests kube-apiserver sends.
func EtcdServers(members []api.Member) (string, error) {
	var urls []string
	for _, m := range members {
		if !m.IsLearner {
			urls = append(urls, m.ClientURLs...)
		}
	}
	if len(urls) == 0 {
		return "", errors.New("no voting member advertises a client URL yet")
	}
	return strings.Join(urls, ","), nil
}

// HAProxy is a TCP backend stanza for the load-balancer setup in the
// Kubernetes guide: TLS passes through to etcd, so kube-apiserver's
// client certificate still reaches the members.
func HAProxy(members []api.Member) (string, error) {
	var b strings.Builder
	b.WriteString("# etcd members; point kube-apiserver's --etcd-servers at the load balancer.\n")
	b.WriteString("# TLS passes through (mode tcp), so etcd still checks client certificates.\n")
	b.WriteString("backend etcd\n")
	b.WriteString("    mode tcp\n")
	b.WriteString("    balance leastconn\n")
	b.WriteString("    option tcp-check\n")
	b.WriteString("    default-server inter 2s fall 3 rise 2\n")
	n := 0
	for _, m := range members {
		if m.IsLearner {
			continue
		}
		for i, raw := range m.ClientURLs {
			u, err := url.Parse(raw)
			if err != nil || u.Host == "" {
				return "", fmt.Errorf("member %s: client URL %q has no host:port", m.Name, raw)
			}
			name := m.Name
			if name == "" {
				name = m.ID
			}
			if i > 0 {
				name = fmt.Sprintf("%s-%d", name, i)
			}
			fmt.Fprintf(&b, "    server %s %s check\n", name, u.Host)
			n++
		}
	}
	if n == 0 {
		return "", errors.New("no voting member advertises a client URL yet")
	}
	return b.String(), nil
}

// WriteFile replaces path with content atomically: a reader (a
// kube-apiserver wrapper, a load balancer's reload hook) sees the old file
// or the new one, never half of one. It does nothing when the file already
// holds content, so watchers are not woken for nothing.
func WriteFile(path string, content []byte) (changed bool, err error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, content) {
		return false, nil
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	if _, err := tmp.Write(content); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	// The rename is durable only once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return true, nil
}
