package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File modes. Keys are for their owner only; certificates are public.
const (
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
	dirMode  fs.FileMode = 0o755
)

// ErrExists is wrapped by WritePair's error for a file it will not
// overwrite.
var ErrExists = errors.New("already exists")

// WritePair writes dir/name.crt (0644) and dir/name.key (0600) atomically
// (temp file in dir, fsync, rename, fsync dir), creating dir if needed.
// It refuses to overwrite existing files unless force, naming the file.
//
// Both files are staged before either is renamed, so a failure leaves the
// old pair whole; only a crash between the two renames can leave a new key
// beside an old certificate, which Check reports as a mismatch. The
// existence check guards against an operator's slip, not against another
// process writing the same files at the same moment.
func WritePair(dir, name string, kp *KeyPair, force bool) (certPath, keyPath string, err error) {
	if name == "" || name == "." || name == ".." || name != filepath.Base(name) {
		return "", "", fmt.Errorf("write pair: name %q must be a plain file name, without a directory", name)
	}
	if kp == nil || len(kp.CertPEM) == 0 || len(kp.KeyPEM) == 0 {
		return "", "", fmt.Errorf("write pair %s: nothing to write", name)
	}
	certPath = filepath.Join(dir, name+".crt")
	keyPath = filepath.Join(dir, name+".key")
	if !force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return "", "", fmt.Errorf("%s %w; not overwriting it", p, ErrExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return "", "", fmt.Errorf("write pair: %w", err)
			}
		}
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return "", "", fmt.Errorf("write pair: %w", err)
	}
	keyTmp, err := stage(dir, keyPath, kp.KeyPEM, keyMode)
	if err != nil {
		return "", "", err
	}
	certTmp, err := stage(dir, certPath, kp.CertPEM, certMode)
	if err != nil {
		os.Remove(keyTmp)
		return "", "", err
	}
	if err := os.Rename(keyTmp, keyPath); err != nil {
		os.Remove(keyTmp)
		os.Remove(certTmp)
		return "", "", fmt.Errorf("write %s: %w", keyPath, err)
	}
	if err := os.Rename(certTmp, certPath); err != nil {
		os.Remove(certTmp)
		return "", "", fmt.Errorf("write %s: %w", certPath, err)
	}
	if err := syncDir(dir); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// writeFile writes path atomically with mode, for files that are not a
// pair (a copy of the CA certificate, a config). It overwrites.
func writeFile(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := stage(dir, path, data, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// stage writes data to a temporary file next to final and fsyncs it, so
// that the rename which follows publishes complete contents or nothing.
func stage(dir, final string, data []byte, mode fs.FileMode) (tmpPath string, err error) {
	f, err := os.CreateTemp(dir, "."+filepath.Base(final)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", final, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// Chmod, not the umask: a key must end up 0600 and a certificate 0644
	// whatever the caller's umask is (systemd gives the daemon 0077).
	if err := f.Chmod(mode); err != nil {
		return "", fmt.Errorf("write %s: %w", final, err)
	}
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("write %s: %w", final, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("write %s: fsync: %w", final, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", final, err)
	}
	return f.Name(), nil
}

// syncDir makes the renames into dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
