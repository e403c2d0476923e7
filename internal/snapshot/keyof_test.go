package snapshot

import (
	"bytes"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// keyOf reads the key etcd stored, as a full unmarshal does, and refuses
// what a full unmarshal refuses.
func TestKeyOfReadsTheKeyAsUnmarshalDoes(t *testing.T) {
	for _, kv := range []*mvccpb.KeyValue{
		{Key: []byte("/registry/pods/default/web-0"), Value: bytes.Repeat([]byte("v"), 70000), CreateRevision: 5, ModRevision: 9, Version: 3, Lease: 42},
		{Key: []byte("k"), Value: nil, ModRevision: 1},
		{Key: nil, Value: []byte("x")},
	} {
		b, err := proto.Marshal(kv)
		if err != nil {
			t.Fatal(err)
		}
		var full mvccpb.KeyValue
		if err := proto.Unmarshal(b, &full); err != nil {
			t.Fatal(err)
		}
		got, err := keyOf(b)
		if err != nil || !bytes.Equal(got, full.Key) {
			t.Errorf("keyOf(%q...) = %q, %v; unmarshal says %q", kv.Key, got, err, full.Key)
		}
		// Cut short inside the value: both refuse it.
		cut := b[:len(b)-1]
		if len(kv.Value) > 0 {
			if proto.Unmarshal(cut, &full) == nil {
				t.Fatalf("unmarshal took a cut message")
			}
			if _, err := keyOf(cut); err == nil {
				t.Errorf("keyOf took a message cut short (key %q)", kv.Key)
			}
		}
	}
	if _, err := keyOf([]byte{0xff, 0xff, 0xff}); err == nil {
		t.Error("keyOf took garbage")
	}
}
