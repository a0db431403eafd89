#!/usr/bin/env bash
# Installs the Debian packages given as arguments that are not installed
# yet. Idempotent: does nothing (and needs no root) when all are present.
set -euo pipefail
missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: these Debian packages are missing: ${missing[*]}" >&2
    echo "deps: run 'sudo make deps' (or install them with apt-get) and try again" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# refresh the package lists when they are missing or older than a day
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
    apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts these services on install; the project runs its own copies.
for svc in nginx redis-server postgresql; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
    fi
done
