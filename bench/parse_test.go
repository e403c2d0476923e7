package main

import (
	"strings"
	"testing"
	"time"
)

// sample is the stdout of a real run of etcd's benchmark tool (v3.7.0
// tools with pkg/v3 v3.7.3) against plain etcd 3.7.3 on this machine:
//
//	benchmark --endpoints=http://127.0.0.1:23791 --conns=100 --clients=100 \
//	  put --key-size=8 --sequential-keys --total=5000 --val-size=256
const sample = `
Summary:
  Total:	0.4504 secs.
  Slowest:	0.0419 secs.
  Fastest:	0.0009 secs.
  Average:	0.0085 secs.
  Stddev:	0.0046 secs.
  Requests/sec:	11102.4437

Response time histogram:
  0.0009 [1]	|
  0.0050 [698]	|∎∎∎∎∎∎∎∎∎∎
  0.0091 [2674]	|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎
  0.0132 [1211]	|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎
  0.0173 [282]	|∎∎∎∎
  0.0214 [29]	|
  0.0255 [22]	|
  0.0296 [10]	|
  0.0337 [13]	|
  0.0378 [47]	|
  0.0419 [13]	|

Latency distribution:
  10% in 0.0046 secs.
  25% in 0.0059 secs.
  50% in 0.0076 secs.
  75% in 0.0098 secs.
  90% in 0.0125 secs.
  95% in 0.0142 secs.
  99% in 0.0344 secs.
  99.9% in 0.0400 secs.

`

// The tool prints this after the summary when some puts fail, and still
// exits 0 (the format of report.errors()).
const errorsTail = `
Error distribution:
  [37]	context deadline exceeded
`

func TestParseBenchmark(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    result
		wantErr string // substring; empty means no error
	}{
		{
			name: "real output",
			out:  sample,
			want: result{rps: 11102.4437, p99: 34400 * time.Microsecond},
		},
		{
			name:    "99.9% line alone is not taken for 99%",
			out:     strings.Replace(sample, "  99% in 0.0344 secs.\n", "", 1),
			wantErr: "no \"99% in",
		},
		{
			name:    "failed requests fail the run",
			out:     sample + errorsTail,
			wantErr: "requests failed: [37]\tcontext deadline exceeded",
		},
		{
			name:    "only errors, no summary (every put failed)",
			out:     errorsTail,
			wantErr: "requests failed",
		},
		{
			name:    "empty output",
			out:     "",
			wantErr: `no "Requests/sec:" line`,
		},
		{
			name:    "garbled rate",
			out:     strings.Replace(sample, "11102.4437", "lots", 1),
			wantErr: `parse "Requests/sec:\tlots"`,
		},
		{
			name:    "garbled p99",
			out:     strings.Replace(sample, "99% in 0.0344 secs.", "99% in soon secs.", 1),
			wantErr: `parse "99% in soon secs."`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseBenchmark(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseBenchmark() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseBenchmark() error = %v", err)
			}
			// The p99 goes through a float, so allow a nanosecond of rounding.
			if got.rps != tt.want.rps || (got.p99-tt.want.p99).Abs() > time.Nanosecond {
				t.Errorf("parseBenchmark() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestComma(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999.4: "999", 999.6: "1,000", 18812: "18,812", 1234567: "1,234,567"} {
		if got := comma(in); got != want {
			t.Errorf("comma(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseDBSize(t *testing.T) {
	// Trimmed from etcdctl v3.7.3 endpoint status -w json.
	out := `[{"Endpoint":"http://127.0.0.1:40123","Status":{"header":{"cluster_id":1,"member_id":2,"revision":1106,"raft_term":2},"version":"3.7.3","dbSize":74498048,"leader":2,"raftIndex":1110,"raftTerm":2,"dbSizeInUse":74498048}}]`
	if got, err := parseDBSize([]byte(out)); err != nil || got != 74498048 {
		t.Errorf("parseDBSize() = %d, %v; want 74498048", got, err)
	}
	for _, bad := range []string{"", "[]", `[{"Status":{}}]`, "not json"} {
		if _, err := parseDBSize([]byte(bad)); err == nil {
			t.Errorf("parseDBSize(%q) succeeded", bad)
		}
	}
}
