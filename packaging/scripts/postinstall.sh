#!/bin/sh
# etcdvisor post-install (deb: postinst "configure"; rpm: %post 1 or 2).
# Idempotent: safe on install, upgrade and re-run.
# It neither enables nor (re)starts the service: a member must be configured
# first, and restarting members of a cluster is done one at a time by the
# operator (or by etcdvisor's rolling restart), never by the package manager.
set -e

if ! getent group etcdvisor >/dev/null 2>&1; then
	groupadd --system etcdvisor
fi

if ! getent passwd etcdvisor >/dev/null 2>&1; then
	shell=/bin/false
	for s in /usr/sbin/nologin /sbin/nologin; do
		if [ -x "$s" ]; then
			shell=$s
			break
		fi
	done
	# No home is created here: systemd's StateDirectory= creates
	# /var/lib/etcdvisor owned by etcdvisor with mode 0700 on first start.
	useradd --system --gid etcdvisor --no-create-home \
		--home-dir /var/lib/etcdvisor --shell "$shell" \
		--comment "etcdvisor etcd supervisor" etcdvisor
fi

# Snapshots go to their own directory, outside etcd's data dir (ideally on
# another disk); the unit's sandbox may write there but cannot create it.
install -d -m 0700 -o etcdvisor -g etcdvisor /var/backups/etcdvisor

# Make systemd see the new or changed unit, if systemd is the running init.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
fi

exit 0
