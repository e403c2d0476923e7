package pki

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInspectReportsSANsUsagesAndDaysLeft(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, CACommonName)
	notBefore := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := notBefore.Add(100 * 24 * time.Hour)
	crt, _ := writeTestPair(t, dir, "server", mustIssue(t, ca, Request{
		Kind: Server, CommonName: "a", DNSNames: []string{"a.example", "localhost"},
		IPs: []net.IP{net.ParseIP("10.0.0.1"), loopback}, NotBefore: notBefore, Validity: 100 * 24 * time.Hour,
	}))

	tests := []struct {
		name string
		now  time.Time
		want int
	}{
		{"ten days in", notBefore.Add(10 * 24 * time.Hour), 90},
		{"an hour before expiry", notAfter.Add(-time.Hour), 0},
		{"an hour after expiry", notAfter.Add(time.Hour), -1},
		{"a year after expiry", notAfter.Add(365 * 24 * time.Hour), -365},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Inspect(crt, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if info.DaysLeft != tt.want {
				t.Errorf("got DaysLeft %d, want %d", info.DaysLeft, tt.want)
			}
			if want := []string{"a.example", "localhost"}; !slices.Equal(info.DNSNames, want) {
				t.Errorf("got DNSNames %q, want %q", info.DNSNames, want)
			}
			if want := []string{"10.0.0.1", "127.0.0.1"}; !slices.Equal(info.IPs, want) {
				t.Errorf("got IPs %q, want %q", info.IPs, want)
			}
			if want := []string{"digital signature", "server auth", "client auth"}; !slices.Equal(info.Usages, want) {
				t.Errorf("got Usages %q, want %q", info.Usages, want)
			}
			if info.Subject != "CN=a" || info.Issuer != "CN=etcd-ca" || info.IsCA {
				t.Errorf("got subject %q issuer %q isCA %t, want CN=a, CN=etcd-ca, false", info.Subject, info.Issuer, info.IsCA)
			}
			if !info.NotBefore.Equal(notBefore) || !info.NotAfter.Equal(notAfter) {
				t.Errorf("got validity %s..%s, want %s..%s", info.NotBefore, info.NotAfter, notBefore, notAfter)
			}
		})
	}
}

func TestInspectDescribesACA(t *testing.T) {
	dir := t.TempDir()
	caFile := writeTestCA(t, dir, newTestCA(t, CACommonName))
	info, err := Inspect(caFile, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !info.IsCA || !slices.Equal(info.Usages, []string{"cert sign", "crl sign"}) || info.Subject != info.Issuer {
		t.Fatalf("got isCA %t, usages %q, subject %q, issuer %q; want a self-signed CA that signs certs and CRLs",
			info.IsCA, info.Usages, info.Subject, info.Issuer)
	}
	var table bytes.Buffer
	if err := info.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SUBJECT     CN=etcd-ca\n", "CA          true\n", "USAGES      cert sign, crl sign\n", "IPS         -\n"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("got table\n%s\nwant it to contain %q", table.String(), want)
		}
	}
	js, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"isCA":true`) || strings.Contains(string(js), "dnsNames") {
		t.Errorf("got JSON %s, want isCA true and no empty dnsNames", js)
	}
}

func TestInspectAndExpiresAtNameTheFileThatIsNotACertificate(t *testing.T) {
	dir := t.TempDir()
	_, key := writeTestPair(t, dir, "c", mustIssue(t, newTestCA(t, CACommonName), Request{Kind: Client, CommonName: "c"}))
	empty := filepath.Join(dir, "empty.crt")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		file string
		want string
	}{
		{"a key file", key, key + ": holds a private key, not a certificate"},
		{"an empty file", empty, empty + ": no certificate in it"},
		{"a missing file", filepath.Join(dir, "nope.crt"), filepath.Join(dir, "nope.crt") + ": no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Inspect(tt.file, time.Now())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Inspect: got %v, want an error containing %q", err, tt.want)
			}
			_, err = ExpiresAt(tt.file)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ExpiresAt: got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestExpiresAtReadsNotAfter(t *testing.T) {
	kp := mustIssue(t, newTestCA(t, CACommonName), Request{Kind: Client, CommonName: "c", Validity: 30 * 24 * time.Hour})
	crt, _ := writeTestPair(t, t.TempDir(), "c", kp)
	got, err := ExpiresAt(crt)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(kp.Cert.NotAfter) {
		t.Fatalf("got %s, want %s", got, kp.Cert.NotAfter)
	}
}
