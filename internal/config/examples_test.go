package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestShippedConfigsValidate keeps configs/ and the packaged config honest:
// every example an operator copies must pass `etcdvisor config validate`.
func TestShippedConfigsValidate(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../../configs/*/*.yaml")
	files = append(files, more...)
	files = append(files, "../../packaging/etcdvisor.yaml")
	if len(files) < 2 {
		t.Fatalf("found only %v; the examples moved?", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := os.Stat(f); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(f)
			if err == nil {
				err = cfg.Validate()
			}
			if err != nil {
				t.Fatalf("%v", err)
			}
		})
	}
}
