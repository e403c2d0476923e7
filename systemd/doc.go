// Package systemd holds etcdvisor's systemd unit; its test verifies the unit with systemd-analyze.
package systemd
