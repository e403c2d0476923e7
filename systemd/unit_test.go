package systemd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// unitName is the shipped unit's file name; every copy the tests hand to
	// systemd-analyze carries the same name.
	unitName = "etcdvisor.service"
	// installedBinary is ExecStart's binary in the shipped unit.
	installedBinary = "/usr/bin/etcdvisor"
)

// problemWords mark a systemd-analyze output line as a problem with the unit
// (compared case-insensitively). Any line naming the unit file is one too.
var problemWords = []string{"unknown", "failed", "invalid", "ignoring", "not supported", "deprecated"}

// tolerated lists output lines that come from the test environment rather
// than from the unit; each entry says why it is environmental.
//
// It is empty on purpose. On the development machine (Debian 12, systemd
// 252.38, systemd not PID 1, no /run/systemd/system, no `etcdvisor` user or
// group) `systemd-analyze verify` on the shipped unit prints nothing at all,
// run as root, as nobody, and with SYSTEMD_UNIT_PATH pointing at an empty
// directory (no network-online.target or multi-user.target to load): it does
// not look up User=/Group= and does not need a running manager. The one
// environmental complaint seen, "Command /usr/bin/etcdvisor is not
// executable", is avoided by the ExecStart rewrite instead of tolerated. Add
// an entry only for a line shown to appear with a correct unit.
var tolerated []struct {
	re  *regexp.Regexp
	why string
}

var analyzeHelp = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("systemd-analyze", "--help").CombinedOutput()
	return string(out), err
})

// systemdAnalyze skips the test when systemd-analyze is not installed and
// returns its --help text, used to probe for option support.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skipf("systemd-analyze not on PATH (%v); install systemd to verify the unit", err)
	}
	help, err := analyzeHelp()
	if err != nil {
		t.Fatalf("systemd-analyze --help: %v\n%s", err, help)
	}
	return help
}

// analyzeEnv is the environment without SYSTEMD_* variables, so a caller's
// SYSTEMD_LOG_LEVEL cannot hide warnings and SYSTEMD_UNIT_PATH cannot change
// what gets loaded; colours and pager are off for plain, parseable output.
func analyzeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SYSTEMD_") {
			env = append(env, kv)
		}
	}
	return append(env, "SYSTEMD_COLORS=0", "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=cat")
}

func runAnalyze(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "systemd-analyze", args...)
	cmd.Env = analyzeEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readShippedUnit(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(unitName)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// stageUnit writes unit into a fresh temp dir as etcdvisor.service and returns
// its path. The ONLY change made is ExecStart's binary: /usr/bin/etcdvisor
// becomes a copy of true(1) named etcdvisor in the same dir, because
// systemd-analyze verify fails on an ExecStart binary that does not exist and
// the daemon is not installed where the test runs. Everything else is checked
// as shipped.
func stageUnit(t *testing.T, unit []byte) string {
	t.Helper()
	dir := t.TempDir()
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatalf("need true(1) as ExecStart placeholder: %v", err)
	}
	bin, err := os.ReadFile(truePath)
	if err != nil {
		t.Fatal(err)
	}
	placeholder := filepath.Join(dir, "etcdvisor")
	if err := os.WriteFile(placeholder, bin, 0o755); err != nil {
		t.Fatal(err)
	}

	var (
		out      bytes.Buffer
		rewrites int
	)
	for line := range strings.Lines(string(unit)) {
		if rest, ok := strings.CutPrefix(line, "ExecStart="+installedBinary+" "); ok {
			line = "ExecStart=" + placeholder + " " + rest
			rewrites++
		}
		out.WriteString(line)
	}
	if rewrites != 1 {
		t.Fatalf("expected exactly one %q line to rewrite, found %d", "ExecStart="+installedBinary+" ...", rewrites)
	}
	path := filepath.Join(dir, unitName)
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkVerifyOutput is the checker shared by the shipped and the broken
// unit: it returns the lines of systemd-analyze verify output that report a
// problem, and the lines it let through as environmental. A non-zero exit is
// a problem too.
func checkVerifyOutput(out string, runErr error) (problems, allowed []string) {
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if why := toleratedWhy(line); why != "" {
			allowed = append(allowed, fmt.Sprintf("%s  [tolerated: %s]", line, why))
			continue
		}
		lower := strings.ToLower(line)
		bad := strings.Contains(line, unitName)
		for _, w := range problemWords {
			bad = bad || strings.Contains(lower, w)
		}
		if bad {
			problems = append(problems, line)
		}
	}
	if runErr != nil {
		problems = append(problems, fmt.Sprintf("systemd-analyze verify: %v", runErr))
	}
	return problems, allowed
}

func toleratedWhy(line string) string {
	for _, tol := range tolerated {
		if tol.re.MatchString(line) {
			return tol.why
		}
	}
	return ""
}

// verifyUnit stages unit and runs systemd-analyze verify on it.
func verifyUnit(t *testing.T, help string, unit []byte) (out string, problems, allowed []string) {
	t.Helper()
	path := stageUnit(t, unit)
	args := []string{"verify"}
	// --man=no: the Documentation= URL is not a man page, and man pages need
	// not be installed where the test runs. --recursive-errors=no: judge this
	// unit, not the distribution's targets it is ordered after.
	if strings.Contains(help, "--man") {
		args = append(args, "--man=no")
	}
	if strings.Contains(help, "--recursive-errors") {
		args = append(args, "--recursive-errors=no")
	}
	args = append(args, path)
	out, err := runAnalyze(t, args...)
	t.Logf("systemd-analyze %s\n--- output (%d bytes) ---\n%s--- end ---", strings.Join(args, " "), len(out), out)
	problems, allowed = checkVerifyOutput(out, err)
	return out, problems, allowed
}

// breakUnit replaces each old line of unit by new and fails the test if an
// old line is missing, so the broken case cannot silently turn into a copy
// of the good unit when the unit changes.
func breakUnit(t *testing.T, unit []byte, oldNew ...string) []byte {
	t.Helper()
	s := string(unit)
	for i := 0; i < len(oldNew); i += 2 {
		old, repl := "\n"+oldNew[i]+"\n", "\n"+oldNew[i+1]+"\n"
		if strings.Count(s, old) != 1 {
			t.Fatalf("breakUnit: line %q not found exactly once in the unit", oldNew[i])
		}
		s = strings.Replace(s, old, repl, 1)
	}
	return []byte(s)
}

func TestVerify(t *testing.T) {
	help := systemdAnalyze(t)
	shipped := readShippedUnit(t)

	tests := []struct {
		name string
		unit []byte
		// wantProblems: substrings that must each appear in some reported
		// problem line; nil means the checker must report nothing.
		wantProblems []string
	}{
		{name: "shipped", unit: shipped},
		{
			name: "broken",
			unit: breakUnit(t, shipped,
				"WatchdogSec=30s", "WatchdogSecs=30s",
				"IOSchedulingClass=best-effort", "IOSchedulingClass=bogus",
			),
			wantProblems: []string{"WatchdogSecs", "bogus"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, problems, allowed := verifyUnit(t, help, tc.unit)
			for _, l := range allowed {
				t.Logf("tolerated: %s", l)
			}
			if tc.wantProblems == nil {
				for _, p := range problems {
					t.Errorf("systemd-analyze verify: %s", p)
				}
				return
			}
			if len(problems) == 0 {
				t.Fatalf("checker reported no problem for a broken unit")
			}
			for _, want := range tc.wantProblems {
				found := false
				for _, p := range problems {
					found = found || strings.Contains(p, want)
				}
				if !found {
					t.Errorf("no reported problem mentions %q; problems: %q", want, problems)
				}
			}
		})
	}
}

var overallExposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?) ([A-Z]+)`)

// exposureRank orders systemd-analyze security's levels, best first.
var exposureRank = map[string]int{
	"PERFECT": 0, "SAFE": 1, "OK": 2, "MEDIUM": 3, "EXPOSED": 4, "UNSAFE": 5, "DANGEROUS": 6,
}

func TestSecurityExposure(t *testing.T) {
	help := systemdAnalyze(t)
	if !strings.Contains(help, "--offline") {
		t.Skip("this systemd-analyze has no --offline; security analysis needs a running manager")
	}
	path := stageUnit(t, readShippedUnit(t))
	out, err := runAnalyze(t, "security", "--offline=yes", "--no-pager", path)
	t.Logf("systemd-analyze security --offline=yes\n%s", out)
	if err != nil {
		t.Fatalf("systemd-analyze security: %v", err)
	}
	m := overallExposure.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q line in the output", "Overall exposure level")
	}
	score, level := m[1], m[2]
	rank, known := exposureRank[level]
	if !known {
		t.Fatalf("unknown exposure level %q (score %s)", level, score)
	}
	t.Logf("overall exposure: %s %s", score, level)
	if rank > exposureRank["MEDIUM"] {
		t.Errorf("overall exposure %s %s is worse than MEDIUM", score, level)
	}
}

// unitFile maps section -> key -> every value assigned, in file order.
type unitFile map[string]map[string][]string

// parseUnit reads the INI-like unit syntax: [Section] headers, Key=Value
// lines (a key may repeat), # and ; comments, backslash line continuation.
func parseUnit(data []byte) (unitFile, error) {
	u := unitFile{}
	var section, pending string
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if pending != "" {
			line = pending + " " + line
			pending = ""
		} else if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending = strings.TrimSpace(cont)
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section header %q", n, line)
			}
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		if section == "" {
			return nil, fmt.Errorf("line %d: %q before any section", n, line)
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: no '=' in %q", n, line)
		}
		k = strings.TrimSpace(k)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	if pending != "" {
		return nil, fmt.Errorf("file ends inside a continued line")
	}
	return u, sc.Err()
}

// last returns the value that wins for a single-valued setting.
func (u unitFile) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// words returns all words assigned to a list setting, honouring an empty
// assignment as a reset.
func (u unitFile) words(section, key string) []string {
	var ws []string
	for _, v := range u[section][key] {
		if v == "" {
			ws = nil
			continue
		}
		ws = append(ws, strings.Fields(v)...)
	}
	return ws
}

func TestParseUnit(t *testing.T) {
	u, err := parseUnit([]byte("# c\n[Unit]\nAfter=a.target\nAfter=b.target\n; c\n[Service]\nExecStart=/bin/x \\\n  --flag\nX=\nX=1 2\nCapabilityBoundingSet=\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(u.words("Unit", "After"), ","); got != "a.target,b.target" {
		t.Errorf("After = %q", got)
	}
	if got, _ := u.last("Service", "ExecStart"); got != "/bin/x --flag" {
		t.Errorf("ExecStart = %q", got)
	}
	if got := u.words("Service", "X"); len(got) != 2 {
		t.Errorf("X words = %q", got)
	}
	if got, ok := u.last("Service", "CapabilityBoundingSet"); !ok || got != "" {
		t.Errorf("CapabilityBoundingSet = %q, %v", got, ok)
	}
	for _, bad := range []string{"Key=v\n", "[Unit]\nnoequals\n", "[Unit\n", "[Unit]\nA=b \\\n"} {
		if _, err := parseUnit([]byte(bad)); err == nil {
			t.Errorf("parseUnit(%q): no error", bad)
		}
	}
}

func TestUnitSettings(t *testing.T) {
	u, err := parseUnit(readShippedUnit(t))
	if err != nil {
		t.Fatal(err)
	}

	want := []struct{ section, key, value string }{
		{"Service", "Type", "notify"},
		{"Service", "NotifyAccess", "main"},
		{"Service", "ExecStart", installedBinary + " run --config /etc/etcdvisor/etcdvisor.yaml"},
		{"Service", "User", "etcdvisor"},
		{"Service", "Group", "etcdvisor"},
		{"Service", "Restart", "on-failure"},
		{"Service", "RuntimeDirectory", "etcdvisor"},
		{"Service", "RuntimeDirectoryMode", "0750"},
		{"Service", "StateDirectory", "etcdvisor"},
		{"Service", "StateDirectoryMode", "0700"},
		{"Service", "ConfigurationDirectory", "etcdvisor"},
		{"Service", "IOSchedulingClass", "best-effort"},
		{"Service", "IOSchedulingPriority", "0"},
		{"Service", "UMask", "0077"},
		{"Service", "NoNewPrivileges", "yes"},
		{"Service", "ProtectSystem", "strict"},
		{"Service", "ProtectHome", "yes"},
		{"Service", "PrivateTmp", "yes"},
		{"Service", "PrivateDevices", "yes"},
		{"Service", "ProtectKernelTunables", "yes"},
		{"Service", "ProtectKernelModules", "yes"},
		{"Service", "ProtectKernelLogs", "yes"},
		{"Service", "ProtectControlGroups", "yes"},
		{"Service", "MemoryDenyWriteExecute", "yes"},
		{"Service", "CapabilityBoundingSet", ""},
		{"Service", "AmbientCapabilities", ""},
		{"Install", "WantedBy", "multi-user.target"},
	}
	for _, w := range want {
		got, ok := u.last(w.section, w.key)
		switch {
		case !ok:
			t.Errorf("[%s] %s= missing; want %q", w.section, w.key, w.value)
		case got != w.value:
			t.Errorf("[%s] %s=%s; want %q", w.section, w.key, got, w.value)
		}
	}

	// Present, with a value that does not disable the feature.
	for _, k := range []struct{ section, key string }{
		{"Service", "WatchdogSec"},
		{"Service", "RestartSec"},
		{"Service", "TimeoutStartSec"},
		{"Service", "TimeoutStopSec"},
		{"Unit", "StartLimitIntervalSec"},
		{"Unit", "StartLimitBurst"},
	} {
		got, ok := u.last(k.section, k.key)
		switch got {
		case "", "0", "0s", "infinity":
			t.Errorf("[%s] %s=%q (present: %v); want a positive finite value", k.section, k.key, got, ok)
		}
	}
	if _, ok := u.last("Service", "ExecReload"); ok {
		t.Errorf("ExecReload= set, but the daemon has no reload")
	}
	if got, _ := u.last("Service", "KillMode"); got != "mixed" && got != "process" {
		t.Errorf("KillMode=%q; want mixed or process (the daemon stops its etcd child itself)", got)
	}
	if got, _ := u.last("Service", "ProcSubset"); got == "pid" {
		t.Errorf("ProcSubset=pid hides /proc/pressure and /proc/diskstats from the health watcher")
	}

	limit, _ := u.last("Service", "LimitNOFILE")
	for _, part := range strings.Split(limit, ":") {
		if n, err := strconv.Atoi(part); err != nil || n < 65536 {
			t.Errorf("LimitNOFILE=%q; want at least 65536 (etcd's recommendation)", limit)
			break
		}
	}

	for _, c := range []struct {
		section, key string
		words        []string
	}{
		{"Unit", "After", []string{"network-online.target"}},
		{"Unit", "Wants", []string{"network-online.target"}},
		{"Service", "ReadWritePaths", []string{"-/var/backups/etcdvisor"}},
		{"Service", "RestrictAddressFamilies", []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}},
	} {
		have := u.words(c.section, c.key)
		for _, w := range c.words {
			found := false
			for _, h := range have {
				found = found || h == w
			}
			if !found {
				t.Errorf("[%s] %s= lacks %q (has %q)", c.section, c.key, w, have)
			}
		}
	}
}
