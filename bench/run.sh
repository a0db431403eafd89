#!/usr/bin/env bash
# make bench: runs bench/core/run.sh, then every bench/<module>/run.sh, and
# writes their Markdown sections into bench/RESULTS.md. BENCH_ONLY=<name>
# runs one of them and writes bench/.work/RESULTS-<name>.md instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
export BENCH_ROOT=$PWD
out=bench/RESULTS.md
tmp=$(mktemp)
{
    echo "# Benchmark results"
    echo
    echo "Made by \`make bench\` (bench/run.sh) on $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -sr),"
    echo "$(/usr/sbin/nginx -v 2>&1 | sed 's/.*: //'), $(go version | awk '{print $3}'). Load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
} > "$tmp"
suites=(bench/core/run.sh)
for s in bench/*/run.sh; do
    [ "$s" = bench/core/run.sh ] || suites+=("$s")
done
if [ -n "${BENCH_ONLY:-}" ]; then
    # one section: bench/RESULTS.md keeps the full run it came from
    suites=("bench/$BENCH_ONLY/run.sh")
    mkdir -p bench/.work
    out=bench/.work/RESULTS-$BENCH_ONLY.md
fi
for s in "${suites[@]}"; do
    echo "bench: running $s" >&2
    if ! "$s" >> "$tmp"; then
        echo "bench: $s failed" >&2
        echo "**$s failed: see the make bench output.**" >> "$tmp"
        echo >> "$tmp"
    fi
done
mv "$tmp" "$out"
cat "$out"
