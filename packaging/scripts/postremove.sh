#!/bin/sh
# etcdvisor post-remove (deb: postrm; rpm: %postun). Lets systemd forget the
# removed unit. The data dir /var/lib/etcdvisor (etcd's data), the backups in
# /var/backups/etcdvisor and the etcdvisor user are deliberately kept: they
# are never deleted by the package. Idempotent.
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
fi

exit 0
