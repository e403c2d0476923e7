package pki

import (
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Info is what `pki inspect` shows.
type Info struct {
	File      string    `json:"file"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	DNSNames  []string  `json:"dnsNames,omitempty"`
	IPs       []string  `json:"ips,omitempty"`
	IsCA      bool      `json:"isCA"`
	Usages    []string  `json:"usages"` // "server auth", "client auth", "cert sign"...
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	DaysLeft  int       `json:"daysLeft"` // floor; negative when expired
	Serial    string    `json:"serial"`
}

// Inspect describes the first certificate in certFile as of now.
func Inspect(certFile string, now time.Time) (Info, error) {
	cert, err := readCert(certFile)
	if err != nil {
		return Info{}, err
	}
	info := Info{
		File:      certFile,
		Subject:   cert.Subject.String(),
		Issuer:    cert.Issuer.String(),
		DNSNames:  cert.DNSNames,
		IsCA:      cert.IsCA,
		Usages:    usages(cert),
		NotBefore: cert.NotBefore.UTC(),
		NotAfter:  cert.NotAfter.UTC(),
		DaysLeft:  daysBetween(now, cert.NotAfter),
		Serial:    cert.SerialNumber.Text(16),
	}
	for _, ip := range cert.IPAddresses {
		info.IPs = append(info.IPs, ip.String())
	}
	return info, nil
}

// ExpiresAt reads NotAfter of the first certificate in certFile, for the
// expiry metric.
func ExpiresAt(certFile string) (time.Time, error) {
	cert, err := readCert(certFile)
	if err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}

// WriteTable writes i for people, one field a line.
func (i Info) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("FILE", i.File)
	row("SUBJECT", i.Subject)
	row("ISSUER", i.Issuer)
	row("DNS NAMES", listOrDash(i.DNSNames))
	row("IPS", listOrDash(i.IPs))
	row("CA", fmt.Sprint(i.IsCA))
	row("USAGES", listOrDash(i.Usages))
	row("NOT BEFORE", i.NotBefore.Format(time.RFC3339))
	row("NOT AFTER", i.NotAfter.Format(time.RFC3339))
	left := fmt.Sprint(i.DaysLeft)
	if i.DaysLeft < 0 {
		left += " (expired)"
	}
	row("DAYS LEFT", left)
	row("SERIAL", i.Serial)
	return tw.Flush()
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs[0], nil
}

// daysBetween is whole days from now to t, rounded down, so a certificate
// that expires in 23 hours has 0 days left and one that expired an hour
// ago has -1.
func daysBetween(now, t time.Time) int {
	return int(math.Floor(t.Sub(now).Hours() / 24))
}

var keyUsageNames = []struct {
	u    x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "digital signature"},
	{x509.KeyUsageContentCommitment, "content commitment"},
	{x509.KeyUsageKeyEncipherment, "key encipherment"},
	{x509.KeyUsageDataEncipherment, "data encipherment"},
	{x509.KeyUsageKeyAgreement, "key agreement"},
	{x509.KeyUsageCertSign, "cert sign"},
	{x509.KeyUsageCRLSign, "crl sign"},
	{x509.KeyUsageEncipherOnly, "encipher only"},
	{x509.KeyUsageDecipherOnly, "decipher only"},
}

var extKeyUsageNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny:             "any",
	x509.ExtKeyUsageServerAuth:      "server auth",
	x509.ExtKeyUsageClientAuth:      "client auth",
	x509.ExtKeyUsageCodeSigning:     "code signing",
	x509.ExtKeyUsageEmailProtection: "email protection",
	x509.ExtKeyUsageTimeStamping:    "time stamping",
	x509.ExtKeyUsageOCSPSigning:     "ocsp signing",
}

// usages names the key usages and then the extended key usages, in the
// words openssl and cfssl use.
func usages(c *x509.Certificate) []string {
	out := []string{}
	for _, ku := range keyUsageNames {
		if c.KeyUsage&ku.u != 0 {
			out = append(out, ku.name)
		}
	}
	for _, eku := range c.ExtKeyUsage {
		if name, ok := extKeyUsageNames[eku]; ok {
			out = append(out, name)
		} else {
			out = append(out, fmt.Sprintf("extended usage %d", eku))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	return out
}

func listOrDash(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return strings.Join(l, ", ")
}
