package pki

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
)

func TestOnlyAClientWithACertFromTheClusterCAGetsPastClientCertAuth(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, CACommonName)
	other := newTestCA(t, "other-ca")
	caFile := writeTestCA(t, dir, ca)
	serverCrt, serverKey := writeTestPair(t, dir, "server",
		mustIssue(t, ca, Request{Kind: Server, CommonName: "a", DNSNames: []string{"localhost"}, IPs: []net.IP{loopback}}))
	apiCrt, apiKey := writeTestPair(t, dir, APIServerClientName,
		mustIssue(t, ca, Request{Kind: Client, CommonName: APIServerClientName}))
	strangerCrt, strangerKey := writeTestPair(t, dir, "stranger",
		mustIssue(t, other, Request{Kind: Client, CommonName: APIServerClientName}))

	tests := []struct {
		name      string
		cert, key string
		wantOK    bool
		why       string // in the server's error when it refuses
	}{
		{name: "a client without a certificate is refused", why: "didn't provide a certificate"},
		{name: "a client with a certificate from another CA is refused", cert: strangerCrt, key: strangerKey, why: "unknown authority"},
		{name: "kube-apiserver with its certificate from the cluster CA gets in", cert: apiCrt, key: apiKey, wantOK: true},
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			addr, results := serveTLS(t, serverConfig(t, serverCrt, serverKey, caFile, version))
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					clientErr := roundTrip(addr, clientConfig(t, caFile, tt.cert, tt.key))
					serverErr := <-results
					if tt.wantOK {
						if clientErr != nil || serverErr != nil {
							t.Fatalf("got client error %v, server error %v; want the exchange to complete", clientErr, serverErr)
						}
						return
					}
					if clientErr == nil {
						t.Fatal("got a completed exchange, want the server to refuse the client")
					}
					if serverErr == nil {
						t.Fatalf("got a server that accepted the handshake (client saw %v), want it to refuse", clientErr)
					}
					if !strings.Contains(serverErr.Error(), tt.why) {
						t.Fatalf("got server error %q, want one containing %q", serverErr, tt.why)
					}
				})
			}
		})
	}
}

func TestPeerCertsFromOneCAAuthenticateEachOtherBothWays(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, CACommonName)
	caFile := writeTestCA(t, dir, ca)
	peer := func(name string) [2]string {
		c, k := writeTestPair(t, dir, name, mustIssue(t, ca, Request{Kind: Peer, CommonName: name, IPs: []net.IP{loopback}}))
		return [2]string{c, k}
	}
	a, b := peer("a"), peer("b")
	clientCrt, clientKey := writeTestPair(t, dir, "client-only",
		mustIssue(t, ca, Request{Kind: Client, CommonName: "c", IPs: []net.IP{loopback}}))

	tests := []struct {
		name           string
		server, dialer [2]string
		wantOK         bool
		why            string // in the dialer's error when it refuses
	}{
		{name: "a dials b", server: b, dialer: a, wantOK: true},
		{name: "b dials a", server: a, dialer: b, wantOK: true},
		{name: "a client-only certificate cannot serve raft", server: [2]string{clientCrt, clientKey}, dialer: a, why: "incompatible key usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, results := serveTLS(t, serverConfig(t, tt.server[0], tt.server[1], caFile, tls.VersionTLS13))
			clientErr := roundTrip(addr, clientConfig(t, caFile, tt.dialer[0], tt.dialer[1]))
			serverErr := <-results
			if tt.wantOK && (clientErr != nil || serverErr != nil) {
				t.Fatalf("got client error %v, server error %v; want both sides to accept", clientErr, serverErr)
			}
			if !tt.wantOK && clientErr == nil {
				t.Fatal("got a completed exchange, want the dialing peer to refuse the server's certificate")
			}
			if !tt.wantOK && !strings.Contains(clientErr.Error(), tt.why) {
				t.Fatalf("got dialer error %q, want one containing %q", clientErr, tt.why)
			}
		})
	}
}
