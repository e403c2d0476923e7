#!/bin/sh
# etcdvisor pre-remove (deb: prerm "remove"/"upgrade"/...; rpm: %preun 0 on
# erase, 1 on upgrade). Stops and disables the service only when the package
# is removed, not when it is upgraded. Idempotent.
# On SIGTERM etcdvisor moves leadership away first if this member leads;
# the member stays in the cluster: remove it with `etcdvisor member remove`
# (or etcdctl) before uninstalling if it is not coming back.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl stop etcdvisor.service >/dev/null 2>&1 || :
fi
# Drop the enablement symlinks so they do not dangle once the unit is gone
# (works without a running systemd too).
if command -v systemctl >/dev/null 2>&1; then
	systemctl --no-reload disable etcdvisor.service >/dev/null 2>&1 || :
fi

exit 0
