package snapshot

import (
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

func TestSaveTarget(t *testing.T) {
	tmp := t.TempDir()
	for _, tc := range []struct {
		name              string
		file              string
		compress, encrypt bool
		wantDir, wantName string
		wantErr           string
	}{
		{name: "bare name", file: "x", wantDir: ".", wantName: "x"},
		{name: ".db is stripped", file: "/backup/etcd.db", wantDir: "/backup", wantName: "etcd"},
		{name: ".db.zst with --compress", file: "b/x.db.zst", compress: true, wantDir: "b", wantName: "x"},
		{name: ".db.zst.age with both", file: "x.db.zst.age", compress: true, encrypt: true, wantDir: ".", wantName: "x"},
		{name: ".age alone", file: "x.age", encrypt: true, wantDir: ".", wantName: "x"},
		{name: "no extension, both flags", file: "x", compress: true, encrypt: true, wantDir: ".", wantName: "x"},
		{name: "dots inside the name stay", file: "etcd-2026.11.25.db", wantDir: ".", wantName: "etcd-2026.11.25"},
		{name: ".zst without --compress", file: "x.db.zst", wantErr: "without --compress"},
		{name: ".age without --recipient", file: "x.db.age", wantErr: "without --recipient"},
		{name: "trailing slash", file: "backup/", wantErr: "expected a file name"},
		{name: "only an extension", file: "b/.db", wantErr: "expected a file name"},
		{name: "empty", file: "", wantErr: "expected a file name"},
		{name: "existing directory", file: tmp, wantErr: "is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, name, err := SaveTarget(tc.file, tc.compress, tc.encrypt)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %q, err %v; want an error containing %q", dir, name, err, tc.wantErr)
				}
				return
			}
			if err != nil || dir != tc.wantDir || name != tc.wantName {
				t.Errorf("got %q, %q, err %v; want %q, %q", dir, name, err, tc.wantDir, tc.wantName)
			}
		})
	}
}

func TestMemberOptionsCheckNamesTheFlagThatIsWrong(t *testing.T) {
	good := MemberOptions{Endpoint: "http://127.0.0.1:1", File: "x.db", RateLimit: "0"}
	if err := good.Check(); err != nil {
		t.Fatalf("got %v for good options, want nil", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*MemberOptions)
		want string
	}{
		{"--cert without --key", func(o *MemberOptions) { o.Cert = "c.crt" }, "--cert and --key go together"},
		{"--key without --cert", func(o *MemberOptions) { o.Key = "c.key" }, "--cert and --key go together"},
		{"a rate that is not bytes", func(o *MemberOptions) { o.RateLimit = "fast" }, `--rate-limit "fast": expected bytes per second`},
		{"an empty rate", func(o *MemberOptions) { o.RateLimit = "" }, `--rate-limit ""`},
		{"a secret key as recipient", func(o *MemberOptions) { o.Recipients = []string{"AGE-SECRET-KEY-1X"} }, `--recipient "AGE-SECRET-KEY-1X": `},
		{"a .zst file without compression", func(o *MemberOptions) { o.File = "x.db.zst" }, "without --compress"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			if err := o.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// fakeSnapshotStream answers RecvMsg with the given chunks, as etcd's
// snapshot stream does: each says how many bytes remain, then the trailer.
type fakeSnapshotStream struct {
	grpc.ClientStream
	msgs []*pb.SnapshotResponse
}

func (f *fakeSnapshotStream) RecvMsg(m any) error {
	next := f.msgs[0]
	f.msgs = f.msgs[1:]
	r := m.(*pb.SnapshotResponse)
	r.Blob, r.RemainingBytes = next.Blob, next.RemainingBytes
	return nil
}

func TestCountingStreamTakesTheTotalFromTheFirstMessage(t *testing.T) {
	var done, total int64
	s := &countingStream{progress: func(d, tot int64) { done, total = d, tot }, ClientStream: &fakeSnapshotStream{msgs: []*pb.SnapshotResponse{
		{Blob: make([]byte, 4), RemainingBytes: 6},
		{Blob: make([]byte, 6), RemainingBytes: 0},
		{Blob: make([]byte, 32), RemainingBytes: 0}, // the sha256 trailer
	}}}
	for i, want := range []int64{4, 10, 10} {
		if err := s.RecvMsg(&pb.SnapshotResponse{}); err != nil {
			t.Fatal(err)
		}
		if done != want || total != 10 {
			t.Errorf("after message %d: got %d of %d, want %d of 10", i+1, done, total, want)
		}
	}
}
