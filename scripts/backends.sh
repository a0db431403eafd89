#!/usr/bin/env bash
# Starts or stops every local backend the tests use. Each backend lives in
# t/servers/<name>/ctl (start|stop|status), listens on 127.0.0.1 only, and
# keeps its state under .run/<name>/ (removed by stop).
#
#   scripts/backends.sh start|stop|status [name...]
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: backends.sh start|stop|status [name...]}
shift || true
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for ctl in t/servers/*/ctl; do
        [ -x "$ctl" ] && names+=("$(basename "$(dirname "$ctl")")")
    done
fi
export RFFI_ROOT=$PWD
export RFFI_RUN=$PWD/.run
mkdir -p "$RFFI_RUN"
chmod 755 "$RFFI_RUN"
rc=0
for n in "${names[@]}"; do
    if ! "t/servers/$n/ctl" "$action"; then
        echo "backends: $n: $action failed" >&2
        rc=1
    fi
done
exit $rc
