package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckDiskWritesTheSizeAndReportsJSON(t *testing.T) {
	dir := t.TempDir()
	root := newRootCommand()
	root.SetArgs([]string{"check", "disk", dir, "--size", "256KiB", "-w", "json"})
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.Execute()

	var got struct {
		Dir              string   `json:"dir"`
		Size             int64    `json:"size"`
		BlockSize        int      `json:"blockSize"`
		Count            int      `json:"count"`
		P50Seconds       *float64 `json:"p50Seconds"`
		P90Seconds       *float64 `json:"p90Seconds"`
		P99Seconds       *float64 `json:"p99Seconds"`
		MaxSeconds       *float64 `json:"maxSeconds"`
		TookSeconds      *float64 `json:"tookSeconds"`
		TargetP99Seconds float64  `json:"targetP99Seconds"`
		Pass             bool     `json:"pass"`
		Verdict          string   `json:"verdict"`
	}
	if jerr := json.Unmarshal(out.Bytes(), &got); jerr != nil {
		t.Fatalf("output is not JSON: %v\n%s", jerr, out.String())
	}
	// 256KiB hold 113 whole blocks of 2300 bytes.
	if got.Dir != dir || got.Count != 113 || got.Size != 113*2300 || got.BlockSize != 2300 || got.TargetP99Seconds != 0.01 {
		t.Fatalf("got %+v; want 113 blocks of 2300 bytes in %s against 10ms", got, dir)
	}
	if got.P50Seconds == nil || got.P90Seconds == nil || got.P99Seconds == nil || got.MaxSeconds == nil || got.TookSeconds == nil {
		t.Fatalf("quantiles missing from %s", out.String())
	}
	if *got.MaxSeconds <= 0 || *got.P99Seconds > *got.MaxSeconds || *got.P50Seconds > *got.P99Seconds {
		t.Fatalf("got p50 %v, p99 %v, max %v; want 0 < p50 <= p99 <= max", *got.P50Seconds, *got.P99Seconds, *got.MaxSeconds)
	}
	// This machine's disk decides the verdict; the exit status must agree.
	switch {
	case got.Pass && err != nil:
		t.Fatalf("a passing check returned %v", err)
	case !got.Pass && !errors.Is(err, errDiskTooSlow):
		t.Fatalf("a failing check returned %v, want errDiskTooSlow", err)
	}
	if !strings.HasPrefix(got.Verdict, "fdatasync p99 ") {
		t.Fatalf("verdict %q", got.Verdict)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("%s holds %v after the check, want nothing", dir, left)
	}
}

func TestCheckDiskRefusesBadArguments(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none")
	for _, tc := range []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"size below a block", []string{"check", "disk", "--size", "1KiB"}, true, "--size 1KiB is less than one --bs block"},
		{"size not a size", []string{"check", "disk", "--size", "lots"}, true, `invalid argument "lots" for "--size"`},
		{"zero block size", []string{"check", "disk", "--bs", "0"}, true, "--bs 0"},
		{"two dirs", []string{"check", "disk", "a", "b"}, true, "at most 1 arg"},
		{"unknown format", []string{"check", "disk", "-w", "yaml"}, true, "-w"},
		{"missing dir", []string{"check", "disk", missing, "--size", "4KiB"}, false, missing + " does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := runRoot(t, tc.args...)
			var ue usageError
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.As(err, &ue) != tc.usage {
				t.Fatalf("got %v; want an error containing %q (usage error: %t)", err, tc.want, tc.usage)
			}
		})
	}
}
