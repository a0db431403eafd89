#!/usr/bin/env bash
# Everything CI runs: vet, Go tests (with the race detector), the backends,
# every Test::Nginx suite against them, and a 2-minute soak (on backends of
# its own: soak/run.sh). Fails on the first error.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
GO=${GO:-go}
started=0
cleanup() {
    if [ $started -eq 1 ]; then
        ./scripts/backends.sh stop >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

echo "== go vet"
$GO vet ./...
echo "== backends"
started=1 # also stops what did start if one of them fails
./scripts/backends.sh start
echo "== go test -race"
$GO test -count=1 -race ./...
echo "== Test::Nginx suites"
# CI keeps only the end of what a run prints: on a failure, the failed
# checks and their diagnostics are printed again after prove's summary.
mkdir -p .run
if ! ./scripts/prove.sh "$@" 2>&1 | tee .run/prove.log; then
    echo "== what failed (from .run/prove.log)"
    grep -E '^(not ok|#)|^t/.*\.t \.' .run/prove.log | grep -v -E '\.+ ok$' | tail -n 80
    exit 1
fi
if [ $# -eq 0 ]; then
    echo "== soak (2 minutes)"
    SOAK_DURATION=120 SOAK_FUZZ=0 SOAK_COMMAND="make test (SOAK_DURATION=120 SOAK_FUZZ=0 soak/run.sh)" ./soak/run.sh
fi
