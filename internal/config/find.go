package config

import (
	"errors"
	"io/fs"
	"os"
)

// Environment variables the commands read.
const (
	EnvConfig = "ETCDVISOR_CONFIG"
	EnvSocket = "ETCDVISOR_SOCKET"
)

// Find loads the config a command should use: file if given, else
// $ETCDVISOR_CONFIG, else DefaultFile when it exists, else the defaults.
// The daemon and the CLI both call it, so the CLI finds the socket the
// daemon chose.
func Find(file string) (*Config, error) {
	if file == "" {
		file = os.Getenv(EnvConfig)
	}
	if file == "" {
		if _, err := os.Stat(DefaultFile); err == nil {
			file = DefaultFile
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if file == "" {
		return Default(), nil
	}
	return Load(file)
}

// FindSocket is the control socket a CLI command should dial: --socket,
// else $ETCDVISOR_SOCKET, else the socket of the config Find returns with
// --data-dir applied.
func FindSocket(socket, file, dataDir string) (string, error) {
	if socket != "" {
		return socket, nil
	}
	if s := os.Getenv(EnvSocket); s != "" {
		return s, nil
	}
	cfg, err := Find(file)
	if err != nil {
		return "", err
	}
	if dataDir != "" {
		cfg.Etcd.DataDir = dataDir
	}
	return cfg.SocketPath(), nil
}
