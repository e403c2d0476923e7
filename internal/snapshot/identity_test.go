package snapshot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

func TestReadIdentitiesNamesTheFileThatFails(t *testing.T) {
	dir := t.TempDir()
	id := newIdentity(t)
	good := filepath.Join(dir, "key.txt")
	notKey := filepath.Join(dir, "recipient.txt")
	missing := filepath.Join(dir, "missing.txt")
	os.WriteFile(good, []byte("# created: now\n# public key: "+id.Recipient().String()+"\n"+id.String()+"\n"), 0o600)
	os.WriteFile(notKey, []byte(id.Recipient().String()+"\n"), 0o600)

	ids, err := ReadIdentities([]string{good, good})
	if err != nil || len(ids) != 2 {
		t.Fatalf("got %d identities, err %v; want 2", len(ids), err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"a missing file", missing, missing + ": no such file or directory"},
		{"a recipient, not an identity", notKey, notKey + ": "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadIdentities([]string{good, tc.path})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("got %v, want an error starting %q", err, tc.want)
			}
		})
	}
}

func TestReadIdentitiesDecryptWhatParseRecipientsEncryptsTo(t *testing.T) {
	id := newIdentity(t)
	path := filepath.Join(t.TempDir(), "key.txt")
	os.WriteFile(path, []byte(id.String()+"\n"), 0o600)
	rs, err := ParseRecipients([]string{id.Recipient().String()})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := ReadIdentities([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	w, err := age.Encrypt(&b, rs...)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("etcd"))
	w.Close()
	r, err := age.Decrypt(strings.NewReader(b.String()), ids...)
	if err != nil {
		t.Fatalf("decrypt with the identity read: %v", err)
	}
	got := make([]byte, 4)
	if _, err := r.Read(got); err != nil || string(got) != "etcd" {
		t.Errorf("got %q, %v; want etcd", got, err)
	}
}

func TestParseRecipientsNamesTheKeyThatFails(t *testing.T) {
	good := newIdentity(t).Recipient().String()
	for _, bad := range []string{"AGE-SECRET-KEY-1X", "ssh-ed25519 AAAA", ""} {
		_, err := ParseRecipients([]string{good, bad})
		if want := `"` + bad + `": `; err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "expected an age public key") {
			t.Errorf("%q: got %v, want an error starting %s and saying what is expected", bad, err, want)
		}
	}
}
