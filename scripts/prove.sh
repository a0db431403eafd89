#!/usr/bin/env bash
# Runs the Test::Nginx suites: with the real Test::Nginx::Socket::Lua when
# it is installed, with the project's compatible runner (t/lib) otherwise.
# Extra arguments name suites; the default is every suite under t/.
set -euo pipefail
cd "$(dirname "$0")/.."
if perl -MTest::Nginx::Socket::Lua -e1 2>/dev/null; then
    inc=()
    echo "prove: using the installed Test::Nginx"
else
    inc=(-I t/lib)
    echo "prove: Test::Nginx is not installed; using the project's runner (t/lib)"
fi
if [ $# -eq 0 ]; then
    set -- -r t/
fi
exec prove "${inc[@]}" "$@"
