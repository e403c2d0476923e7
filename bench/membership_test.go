package main

import (
	"testing"

	"github.com/etcdvisor/etcdvisor/internal/config"
)

// TestJoinerConfigValidates checks the config the -membership mode gives
// the replacing member against etcdvisor's strict loader.
func TestJoinerConfigValidates(t *testing.T) {
	ms, err := planLoopback(t.TempDir(), "test", 4)
	if err != nil {
		t.Fatal(err)
	}
	text := joinerConfig(ms[3], "c", ms[0].client, ms[1].client)
	cfg, err := config.Parse("etcdvisor.yaml", []byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if !cfg.Join.Joining() || cfg.Join.Replaces != "c" || len(cfg.Join.Endpoints) != 2 {
		t.Errorf("join section: %+v", cfg.Join)
	}
}
