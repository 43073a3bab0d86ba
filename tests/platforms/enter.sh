#!/usr/bin/env bash
# Run a command inside a Debian root as its /: called by platforms.py as PID 1 of a new mount
# and PID namespace (unshare --mount --propagation private --pid --fork). pivot_root, not
# chroot: a process that setns()es into a network namespace of the lab would find the host's
# / again through a chroot, never through a pivoted mount namespace.
# Usage: enter.sh ROOT SRC|"" CMD...
set -euo pipefail
root=$1 src=$2
shift 2

mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
# Name resolution and the CA bundle of the host (a proxy's CA, say), for apt and pip.
rm -f "$root/etc/resolv.conf"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
if [[ -f /etc/ssl/certs/ca-certificates.crt && -f $root/etc/ssl/certs/ca-certificates.crt ]]; then
    mount --bind -o ro /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
if [[ -n $src ]]; then
    mkdir -p "$root/src"
    mount --bind "$src" "$root/src"
    if [[ -d $src/../shared ]]; then
        mkdir -p "$root/shared"
        mount --bind -o ro "$src/../shared" "$root/shared"
    fi
fi

cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot 2>/dev/null || true

# Not exec: this shell stays PID 1 of the namespace and reaps what the command leaves.
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    HOME=/root TERM="${TERM:-dumb}" CI="${CI:-}" "$@"
