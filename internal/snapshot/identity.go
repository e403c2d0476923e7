package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"filippo.io/age"
)

// ReadIdentities reads the age identities in each file, as age-keygen
// writes them, for Open, Verify and Restore to decrypt with. An error
// starts with the path of the file that failed, so a caller can put the
// flag or setting that named it in front.
func ReadIdentities(paths []string) ([]age.Identity, error) {
	var ids []age.Identity
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			// The path is said once, in front.
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		got, err := age.ParseIdentities(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w (expected an age identity file, as age-keygen writes)", p, err)
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// ParseRecipients parses age public keys (age1..., as age-keygen prints
// them) for Options.Recipients. An error starts with the key that failed,
// quoted, so a caller can put the flag or setting that gave it in front.
func ParseRecipients(keys []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, s := range keys {
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w (expected an age public key, age1..., as age-keygen prints)", s, err)
		}
		out = append(out, r)
	}
	return out, nil
}
