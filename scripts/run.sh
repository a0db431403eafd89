#!/usr/bin/env bash
# make run: start the local backends and an nginx on 127.0.0.1:8080 serving
# examples/ (make stop, or `scripts/run.sh stop`, stops both).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
run=$root/.run/examples
port=${PORT:-8080}
nginx=${NGINX:-/usr/sbin/nginx}

if [ "${1:-}" = stop ]; then
    [ -f "$run/nginx.pid" ] && "$nginx" -p "$run/" -c "$run/nginx.conf" -s stop 2>/dev/null || true
    ./scripts/backends.sh stop
    exit 0
fi

./scripts/backends.sh start
mkdir -p "$run"
chmod 755 "$root/.run" "$run"
user=""
[ "$(id -u)" -eq 0 ] && user="user nobody nogroup;"
sed -e "s|@ROOT@|$root|g" -e "s|@RUN@|$run|g" -e "s|@PORT@|$port|g" -e "s|@USER@|$user|g" \
    examples/nginx.conf > "$run/nginx.conf"
if [ -f "$run/nginx.pid" ] && kill -0 "$(cat "$run/nginx.pid")" 2>/dev/null; then
    "$nginx" -p "$run/" -c "$run/nginx.conf" -s reload
else
    "$nginx" -p "$run/" -c "$run/nginx.conf"
fi
sleep 1
cat <<EOM
nginx is serving examples/ on http://127.0.0.1:$port (error log: $run/error.log)
Try:
EOM
grep -h '^# curl' examples/locations/*.conf | sed "s/^# /  /; s/8080/$port/"
echo "Stop with: make stop"
