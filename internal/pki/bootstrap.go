package pki

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Names Bootstrap uses.
const (
	// CACommonName is the CA's common name, as kubeadm names etcd's CA.
	CACommonName = "etcd-ca"
	// APIServerClientName is kube-apiserver's client certificate, named as
	// kubeadm names it.
	APIServerClientName = "kube-apiserver-etcd-client"
	// EtcdvisorClientName is the common name etcdvisor presents to the
	// other members.
	EtcdvisorClientName = "etcdvisor"
	// MemberPlaceholder in BootstrapOptions.InstallDir is replaced by each
	// member's name.
	MemberPlaceholder = "{member}"
	// DefaultInstallDir is where a member's files live on its host; its
	// etcdvisor.yaml is then the daemon's default config file.
	DefaultInstallDir = "/etc/etcdvisor"
	maxMembers        = 7
)

// Member is one etcd member to bootstrap.
type Member struct {
	Name string
	// Host is an IP or a DNS name the member is reached at. It must also
	// be the address the member dials the others from: etcd refuses a
	// peer whose certificate does not cover its connection's source.
	Host string
}

// ParseMembers reads name=host pairs, as `pki bootstrap --members` takes
// them.
func ParseMembers(list []string) ([]Member, error) {
	var out []Member
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		name, host, ok := strings.Cut(s, "=")
		if !ok || name == "" || host == "" {
			return nil, fmt.Errorf("member %q: expected name=host, like a=10.0.0.1", s)
		}
		out = append(out, Member{Name: strings.TrimSpace(name), Host: strings.TrimSpace(host)})
	}
	return out, nil
}

// BootstrapOptions describe a new cluster.
type BootstrapOptions struct {
	// Dir is the output directory; it must not exist or be empty.
	Dir string
	// Members are 1 to 7 members with unique names and hosts.
	Members []Member
	// Token is the initial-cluster-token; default "etcd-cluster-" and 8
	// random hex digits.
	Token string
	// InstallDir is where each member's files will live on its host;
	// configs refer to InstallDir/pki/... Default /etc/etcdvisor. A
	// "{member}" in it is replaced by the member's name, so that with
	// InstallDir = Dir+"/{member}" the configs point at the files where
	// Bootstrap wrote them: a whole TLS cluster can run on one machine
	// (members on 127.0.0.1, 127.0.0.2, ...) straight from Dir.
	InstallDir string
	// Ports; defaults 2379, 2380 and 2381.
	ClientPort, PeerPort, MetricsPort int
	// Validity of the leaf certificates; zero means DefaultValidity. The
	// CA gets DefaultCAValidity.
	Validity time.Duration
	// Out, when set, receives what was written and the next steps.
	Out io.Writer
}

// Bootstrap writes a CA, kube-apiserver's client pair, and for each member
// a directory with its certificates, keys and etcdvisor.yaml:
//
//	Dir/ca.crt, Dir/ca.key                   the CA; keep ca.key offline
//	Dir/kube-apiserver-etcd-client.{crt,key}
//	Dir/<name>/etcdvisor.yaml
//	Dir/<name>/pki/ca.crt
//	Dir/<name>/pki/server.{crt,key}          SANs: host, localhost, 127.0.0.1
//	Dir/<name>/pki/peer.{crt,key}            SANs: host (and 127.0.0.1 for a loopback host)
//	Dir/<name>/pki/etcdvisor-client.{crt,key}
//
// Each config listens for clients on the member's host and on 127.0.0.1
// (for local tools), and for peers on the host. A host given as a DNS name
// listens on 0.0.0.0 instead, since etcd binds only IP addresses; a
// loopback host listens on its own address alone, so that members sharing
// a test machine do not compete for 127.0.0.1.
//
// Preconditions, each checked before anything is written:
//   - Dir does not exist or is an empty directory: a new CA must never be
//     mixed up with the files of another cluster;
//   - 1 to 7 members, names usable as directory names, unique names and
//     hosts, hosts that are IPs or DNS names;
//   - InstallDir is absolute, ports are valid and distinct.
//
// If writing fails part way, Bootstrap removes what it wrote, leaving Dir
// as it found it.
func Bootstrap(o BootstrapOptions) (err error) {
	o, members, err := o.withDefaults()
	if err != nil {
		return fmt.Errorf("pki bootstrap: %w", err)
	}
	created, err := prepareDir(o.Dir)
	if err != nil {
		return fmt.Errorf("pki bootstrap: %w", err)
	}
	defer func() {
		if err != nil {
			cleanDir(o.Dir, created)
		}
	}()

	ca, err := NewCA(CACommonName, DefaultCAValidity)
	if err != nil {
		return err
	}
	if _, _, err := WritePair(o.Dir, "ca", ca, false); err != nil {
		return err
	}
	if err := issueTo(ca, o.Dir, APIServerClientName, Request{Kind: Client, CommonName: APIServerClientName, Validity: o.Validity}); err != nil {
		return err
	}
	for _, m := range members {
		dir := filepath.Join(o.Dir, m.Name)
		pkiDir := filepath.Join(dir, "pki")
		if err := writeFile(filepath.Join(pkiDir, "ca.crt"), ca.CertPEM, certMode); err != nil {
			return err
		}
		// Local tools (etcdctl on the host, etcdvisor's own probes) dial
		// 127.0.0.1 and localhost; Issue drops the duplicates when the
		// member's host is one of them.
		server := m.sans()
		server.DNSNames = append(server.DNSNames, "localhost")
		server.IPs = append(server.IPs, net.IPv4(127, 0, 0, 1))
		server.Kind, server.CommonName, server.Validity = Server, m.Name, o.Validity
		if err := issueTo(ca, pkiDir, "server", server); err != nil {
			return err
		}
		// etcd refuses a peer whose certificate does not cover the
		// address its connection comes from, and between loopback
		// addresses the kernel dials from 127.0.0.1.
		peer := m.sans()
		if m.isLoopback() {
			peer.IPs = append(peer.IPs, net.IPv4(127, 0, 0, 1))
		}
		peer.Kind, peer.CommonName, peer.Validity = Peer, m.Name, o.Validity
		if err := issueTo(ca, pkiDir, "peer", peer); err != nil {
			return err
		}
		if err := issueTo(ca, pkiDir, "etcdvisor-client", Request{Kind: Client, CommonName: EtcdvisorClientName, Validity: o.Validity}); err != nil {
			return err
		}
		cfg, err := memberConfig(o, members, m)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "etcdvisor.yaml"), cfg, certMode); err != nil {
			return err
		}
	}
	if o.Out != nil {
		summary(o.Out, o, members)
	}
	return nil
}

// member is a validated Member.
type member struct {
	Member
	ip net.IP // nil for a DNS name
}

func (m member) sans() Request {
	if m.ip != nil {
		return Request{IPs: []net.IP{m.ip}}
	}
	return Request{DNSNames: []string{m.Host}}
}

// isLoopback reports whether the member's host is localhost or a loopback
// address. Such a member lives on a test machine beside the others, where
// they would all compete for 127.0.0.1, so it listens on its own address
// alone.
func (m member) isLoopback() bool {
	return m.Host == "localhost" || m.ip != nil && m.ip.IsLoopback()
}

// hostPort formats host:port, with IPv6 addresses in brackets.
func (m member) hostPort(port int) string { return net.JoinHostPort(m.Host, strconv.Itoa(port)) }

func (m member) installDir(o BootstrapOptions) string {
	return filepath.Clean(strings.ReplaceAll(o.InstallDir, MemberPlaceholder, m.Name))
}

// reservedNames are the files at the top of Dir, which a member's
// directory must not collide with.
var reservedNames = map[string]bool{
	"ca.crt": true, "ca.key": true,
	APIServerClientName + ".crt": true, APIServerClientName + ".key": true,
}

func (o BootstrapOptions) withDefaults() (BootstrapOptions, []member, error) {
	if o.Dir == "" {
		return o, nil, errors.New("no output directory")
	}
	if n := len(o.Members); n < 1 || n > maxMembers {
		return o, nil, fmt.Errorf("%d members: an etcd cluster has 1 to %d (3 or 5 in production)", n, maxMembers)
	}
	var members []member
	names, hosts := map[string]string{}, map[string]string{}
	for _, m := range o.Members {
		if err := checkMemberName(m.Name); err != nil {
			return o, nil, err
		}
		if _, dup := names[m.Name]; dup {
			return o, nil, fmt.Errorf("member name %q is given twice; each member needs its own name", m.Name)
		}
		names[m.Name] = m.Name
		vm, key, err := checkHost(m)
		if err != nil {
			return o, nil, err
		}
		if other, dup := hosts[key]; dup {
			return o, nil, fmt.Errorf("members %s and %s both have host %s; each member needs its own host (their peer URLs would be the same)",
				other, m.Name, m.Host)
		}
		hosts[key] = m.Name
		members = append(members, vm)
	}
	if o.Token == "" {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return o, nil, fmt.Errorf("token: %w", err)
		}
		o.Token = "etcd-cluster-" + hex.EncodeToString(b)
	}
	if strings.ContainsAny(o.Token, " \t\r\n,=") {
		return o, nil, fmt.Errorf("token %q: must not contain spaces, ',' or '='", o.Token)
	}
	if o.InstallDir == "" {
		o.InstallDir = DefaultInstallDir
	}
	if strings.ContainsFunc(o.InstallDir, unicode.IsControl) {
		return o, nil, fmt.Errorf("install dir %q: must not contain control characters", o.InstallDir)
	}
	if !filepath.IsAbs(o.InstallDir) {
		return o, nil, fmt.Errorf("install dir %q: must be an absolute path (the configs refer to files under it)", o.InstallDir)
	}
	for _, p := range []struct {
		name string
		v    *int
		def  int
	}{{"client", &o.ClientPort, 2379}, {"peer", &o.PeerPort, 2380}, {"metrics", &o.MetricsPort, 2381}} {
		if *p.v == 0 {
			*p.v = p.def
		}
		if *p.v < 1 || *p.v > 65535 {
			return o, nil, fmt.Errorf("%s port %d: expected 1 to 65535", p.name, *p.v)
		}
	}
	if o.ClientPort == o.PeerPort || o.ClientPort == o.MetricsPort || o.PeerPort == o.MetricsPort {
		return o, nil, fmt.Errorf("ports client %d, peer %d and metrics %d must differ", o.ClientPort, o.PeerPort, o.MetricsPort)
	}
	if o.Validity < 0 {
		return o, nil, fmt.Errorf("validity %s must be positive", o.Validity)
	}
	return o, members, nil
}

// checkMemberName allows names that are safe as directory names and in
// etcd's initial-cluster list.
func checkMemberName(name string) error {
	if name == "" {
		return errors.New("a member has no name")
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' && i > 0
		if !ok {
			return fmt.Errorf("member name %q: use letters, digits, '-', '_' and '.' (not first); the name is a directory name too", name)
		}
	}
	if reservedNames[name] {
		return fmt.Errorf("member name %q: taken by a file bootstrap writes next to the member directories", name)
	}
	return nil
}

// checkHost validates m.Host and returns a key that is equal for two
// spellings of one host.
func checkHost(m Member) (member, string, error) {
	h := strings.TrimSpace(m.Host)
	if strings.Contains(h, "://") {
		return member{}, "", fmt.Errorf("member %s: host %q: give a bare IP or DNS name, not a URL", m.Name, m.Host)
	}
	if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
		if ip.IsUnspecified() {
			return member{}, "", fmt.Errorf("member %s: host %s: an unspecified address cannot be dialed; give the member's own IP", m.Name, h)
		}
		m.Host = ip.String()
		return member{Member: m, ip: ip}, m.Host, nil
	}
	if _, _, err := net.SplitHostPort(h); err == nil {
		return member{}, "", fmt.Errorf("member %s: host %q: give the host without a port (ports are the same for every member)", m.Name, m.Host)
	}
	if !validDNSName(h) || strings.Contains(h, "*") {
		return member{}, "", fmt.Errorf("member %s: host %q: expected an IP address or a DNS name", m.Name, m.Host)
	}
	m.Host = strings.ToLower(h)
	return member{Member: m}, m.Host, nil
}

// prepareDir makes sure dir is absent or empty and creates it.
func prepareDir(dir string) (created bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// 0700: until the operator moves it away, ca.key lives here.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, err
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("output directory %s: %w", dir, unwrapPath(err))
	case len(entries) > 0:
		return false, fmt.Errorf("output directory %s is not empty (it has %s); a new cluster's CA and keys go into a new directory, "+
			"never among another cluster's files", dir, entries[0].Name())
	}
	return false, nil
}

// cleanDir undoes a failed Bootstrap: dir was empty or absent before.
func cleanDir(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

func issueTo(ca *KeyPair, dir, name string, req Request) error {
	kp, err := Issue(ca, req)
	if err != nil {
		return err
	}
	_, _, err = WritePair(dir, name, kp, false)
	return err
}

// memberTemplate is a member's etcdvisor.yaml. It uses only keys of the
// daemon's schema, which rejects unknown ones; the test loads every
// generated file with config.Load to keep the two in step.
var memberTemplate = template.Must(template.New("member").Funcs(template.FuncMap{
	"flow":   flowList,
	"scalar": scalar,
}).Parse(`# etcdvisor config for member {{.Name}} of a {{.Size}}-member etcd cluster, made by
# ` + "`etcdvisor pki bootstrap`" + `. Copy the directory {{.Name}}/ (this file and its pki/)
# to {{.Install}} on host {{.Host}}, then start etcdvisor on every member.
log:
  level: info
  format: json
control:
  socket: /run/etcdvisor/etcdvisor.sock
metrics:
  listen: {{scalar .Metrics}}
etcd:
  name: {{scalar .Name}}
  data-dir: /var/lib/etcdvisor
{{- if .ByName}}
  # etcd binds only to IP addresses, so a member known by a DNS name
  # listens on every interface.
{{- end}}
  listen-client-urls: {{flow .ListenClient}}
  advertise-client-urls: {{flow .AdvertiseClient}}
  listen-peer-urls: {{flow .ListenPeer}}
  initial-advertise-peer-urls: {{flow .AdvertisePeer}}
  initial-cluster: {{scalar .Cluster}}
  initial-cluster-state: new
  initial-cluster-token: {{scalar .Token}}
  client-transport-security:
    cert-file: {{scalar (.PKI "server.crt")}}
    key-file: {{scalar (.PKI "server.key")}}
    trusted-ca-file: {{scalar (.PKI "ca.crt")}}
    client-cert-auth: true
  peer-transport-security:
    cert-file: {{scalar (.PKI "peer.crt")}}
    key-file: {{scalar (.PKI "peer.key")}}
    trusted-ca-file: {{scalar (.PKI "ca.crt")}}
    client-cert-auth: true
`))

// memberData fills memberTemplate.
type memberData struct {
	Name, Host, Install, Metrics, Cluster, Token string
	Size                                         int
	ByName                                       bool
	ListenClient, AdvertiseClient                []string
	ListenPeer, AdvertisePeer                    []string
}

// PKI is the path of a file in the member's installed pki directory.
func (d memberData) PKI(name string) string { return filepath.Join(d.Install, "pki", name) }

// memberConfig renders m's etcdvisor.yaml.
func memberConfig(o BootstrapOptions, all []member, m member) ([]byte, error) {
	https := func(host string, port int) string { return "https://" + net.JoinHostPort(host, strconv.Itoa(port)) }
	var cluster []string
	for _, p := range all {
		cluster = append(cluster, p.Name+"="+https(p.Host, o.PeerPort))
	}
	d := memberData{
		Name:            m.Name,
		Host:            m.Host,
		Install:         m.installDir(o),
		Metrics:         net.JoinHostPort("127.0.0.1", strconv.Itoa(o.MetricsPort)),
		Cluster:         strings.Join(cluster, ","),
		Token:           o.Token,
		Size:            len(all),
		ListenClient:    []string{https(m.Host, o.ClientPort), https("127.0.0.1", o.ClientPort)},
		AdvertiseClient: []string{https(m.Host, o.ClientPort)},
		ListenPeer:      []string{https(m.Host, o.PeerPort)},
		AdvertisePeer:   []string{https(m.Host, o.PeerPort)},
	}
	switch {
	case m.ip == nil && m.Host != "localhost":
		// Listening on 0.0.0.0 covers loopback too.
		d.ByName = true
		d.ListenClient = []string{https("0.0.0.0", o.ClientPort)}
		d.ListenPeer = []string{https("0.0.0.0", o.PeerPort)}
	case m.isLoopback():
		d.ListenClient = d.ListenClient[:1]
	}
	var b bytes.Buffer
	if err := memberTemplate.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("config for member %s: %w", m.Name, err)
	}
	return b.Bytes(), nil
}

// scalar writes s as a YAML scalar in block context, quoted only when it
// has to be (an install dir may hold anything).
func scalar(s string) (string, error) {
	out, err := yaml.Marshal(s)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(out), "\n"), nil
}

// flowList writes a YAML flow sequence, [a, b], quoting items that a flow
// context would misread, such as https://[::1]:2379.
func flowList(items []string) string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = s
		if strings.ContainsAny(s, ",[]{}#\"' ") {
			out[i] = strconv.Quote(s)
		}
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// summary tells the operator what Bootstrap wrote and what to do next.
func summary(w io.Writer, o BootstrapOptions, members []member) {
	var servers []string
	for _, m := range members {
		servers = append(servers, "https://"+m.hostPort(o.ClientPort))
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("Wrote a %d-member etcd cluster to %s (initial-cluster-token %s):", len(members), o.Dir, o.Token)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  %s\tthe cluster's CA certificate\n", filepath.Join(o.Dir, "ca.crt"))
	fmt.Fprintf(tw, "  %s\tthe CA's key: keep it offline (step 4)\n", filepath.Join(o.Dir, "ca.key"))
	fmt.Fprintf(tw, "  %s\tkube-apiserver's client pair (CN %s)\n", filepath.Join(o.Dir, APIServerClientName+".{crt,key}"), APIServerClientName)
	for _, m := range members {
		fmt.Fprintf(tw, "  %s/\tmember %s at %s: etcdvisor.yaml, pki/{ca.crt, server, peer, etcdvisor-client}\n",
			filepath.Join(o.Dir, m.Name), m.Name, m.Host)
	}
	tw.Flush()
	p("")
	p("Next steps:")
	p("  1. Copy each member's directory to its host, e.g.:")
	for _, m := range members {
		src, dst := filepath.Join(o.Dir, m.Name)+"/", m.installDir(o)
		if filepath.Clean(src) == dst {
			p("       %s: already in place (%s)", m.Name, dst)
			continue
		}
		p("       rsync -a %s root@%s:%s/", src, bracketIPv6(m), dst)
	}
	p("     The keys are mode 0600; chown them to the user etcdvisor runs as.")
	p("  2. Start etcdvisor on every member (systemctl start etcdvisor); the cluster forms")
	p("     once a majority of the members is up.")
	p("  3. Copy ca.crt and %s.{crt,key} to every kube-apiserver host,", APIServerClientName)
	p("     e.g. into /etc/kubernetes/pki/etcd/, and give kube-apiserver:")
	p("       --etcd-servers=%s", strings.Join(servers, ","))
	p("       --etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt")
	p("       --etcd-certfile=/etc/kubernetes/pki/etcd/%s.crt", APIServerClientName)
	p("       --etcd-keyfile=/etc/kubernetes/pki/etcd/%s.key", APIServerClientName)
	p("  4. Move %s somewhere offline. You need it only to issue certificates", filepath.Join(o.Dir, "ca.key"))
	p("     (etcdvisor pki issue ... --ca DIR), and whoever has it can make certificates")
	p("     every member trusts.")
}

// bracketIPv6 writes an IPv6 host as rsync and ssh expect it.
func bracketIPv6(m member) string {
	if m.ip != nil && m.ip.To4() == nil {
		return "[" + m.Host + "]"
	}
	return m.Host
}
