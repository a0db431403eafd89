#!/usr/bin/env bash
# make soak: one nginx (2 workers) under a mixed wrk load on four locations
# (Redis, PostgreSQL, Kafka send_async from the log phase, gRPC) while the
# backends are restarted one after the other and nginx is reloaded (HUP)
# every 10 s; then soak/tool checks that nothing was lost, leaked or hung.
#
#   soak/run.sh                 SOAK_DURATION seconds (default 600)
#   SOAK_DURATION=120 soak/run.sh   the short version `make test` runs
#   SOAK_DOC=1 soak/run.sh      also write the figures into docs/RELIABILITY.md
#
# The run has two phases:
#   chaos   (duration - steady): load, backend restarts, HUP every 10 s
#   steady  (max(60, duration/5)): one generation of workers, warmed up,
#           then load and backend restarts without HUP, then quiet: the
#           leak checks (in-flight, buffers, goroutines, RSS) look at it
#
# The soak has backends of its own (state in $SOAK_RUN, default .run-soak,
# ports 21xxx): it restarts them, so it must not touch the shared ones that
# `make backends` starts for the test suites.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH=$PATH:/usr/local/go/bin
GO=${GO:-go}
nginx_bin=${NGINX:-/usr/sbin/nginx}
duration=${SOAK_DURATION:-600}
run=${SOAK_RUN:-$root/.run-soak}
nginx_port=${SOAK_NGINX_PORT:-21080}
redis_port=${SOAK_REDIS_PORT:-21379}
pg_port=${SOAK_PG_PORT:-21432}
kafka_ports=(${SOAK_KAFKA_PORTS:-21092 21093 21094})
grpc_port=${SOAK_GRPC_PORT:-21051}
hup_every=10
outage=${SOAK_OUTAGE:-4}   # seconds each backend stays down
gap=${SOAK_GAP:-5}         # seconds between two outages

if [ "$duration" -lt 120 ]; then
    echo "soak: SOAK_DURATION must be at least 120 (seconds)" >&2
    exit 2
fi
steady=$((duration / 5))
[ "$steady" -lt 60 ] && steady=60
chaos=$((duration - steady))

for tool in wrk redis-server redis-cli curl "$nginx_bin"; do
    command -v "$tool" >/dev/null || { echo "soak: $tool is required (make deps)" >&2; exit 1; }
done

pids_to_kill=()
cleanup() {
    set +e
    for p in "${pids_to_kill[@]}"; do kill "$p" 2>/dev/null; done
    [ -f "$run/nginx.pid" ] && kill -QUIT "$(cat "$run/nginx.pid")" 2>/dev/null
    redis_stop
    grpc_stop
    [ -f "$run/kfake.pid" ] && kill "$(cat "$run/kfake.pid")" 2>/dev/null
    RFFI_RUN=$run PG_PORT=$pg_port t/servers/postgres/ctl stop >/dev/null 2>&1
    wait 2>/dev/null
}
trap cleanup EXIT

now() { date +%s.%N; }
event() { echo "$(now) $*" >>"$run/events.log"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # wait_port <port> <what>
    for _ in $(seq 1 200); do port_open "$1" && return 0; sleep 0.05; done
    echo "soak: $2 did not come up on port $1" >&2
    return 1
}

# ---------------------------------------------------------------- backends

redis_start() {
    mkdir -p "$run/redis"
    cat >"$run/redis/redis.conf" <<EOF
bind 127.0.0.1
port $redis_port
daemonize yes
dir $run/redis
pidfile $run/redis/redis.pid
logfile $run/redis/redis.log
save ""
appendonly no
protected-mode no
EOF
    redis-server "$run/redis/redis.conf"
    for _ in $(seq 1 200); do
        redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    echo "soak: redis did not start" >&2
    return 1
}
redis_stop() {
    local f=$run/redis/redis.pid pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
}

pg() { RFFI_RUN=$run PG_PORT=$pg_port t/servers/postgres/ctl "$@"; }

grpc_start() {
    nohup "$run/grpc-server" -proto "$root/t/servers/grpc/proto" -plain "127.0.0.1:$grpc_port" \
        -tls "" -bounce "" >>"$run/grpc.log" 2>&1 </dev/null &
    echo $! >"$run/grpc.pid"
    wait_port "$grpc_port" grpc
}
grpc_stop() {
    local pid
    [ -f "$run/grpc.pid" ] || return 0
    pid=$(cat "$run/grpc.pid")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
}

kafka_start() {
    local list
    list=$(IFS=,; echo "${kafka_ports[*]}")
    nohup "$run/kfake" -ports "$list" -topics "soak:4,soak-probe:4" -control "$run/kfake.sock" \
        >"$run/kfake.log" 2>&1 </dev/null &
    echo $! >"$run/kfake.pid"
    for p in "${kafka_ports[@]}"; do wait_port "$p" kfake; done
}
# kfake is in memory: a broker is "stopped" by closing its listening socket
# and its connections (connections are refused, as when the process is
# gone) rather than by ending the process, which would lose the data.
# SOAK_KAFKA_DOWN=pause keeps it listening but resets every connection.
kafka_down=${SOAK_KAFKA_DOWN:-stop}
kafka_broker() { curl -fsS --max-time 5 --unix-socket "$run/kfake.sock" -X POST "http://kfake/$1?port=$bounced_broker" >/dev/null; }

# ---------------------------------------------------------------- setup

if [ -f "$run/nginx.pid" ] && kill -0 "$(cat "$run/nginx.pid")" 2>/dev/null; then
    kill -QUIT "$(cat "$run/nginx.pid")"
    sleep 1
fi
pg stop >/dev/null 2>&1 || true
rm -rf "$run"
mkdir -p "$run/logs"
chmod 755 "$run"
: >"$run/events.log"

echo "== soak: build ($duration s: chaos $chaos s, steady $steady s)"
make -s build
$GO build -o "$run/grpc-server" ./t/servers/grpc/server
CGO_ENABLED=0 $GO build -o "$run/kfake" ./t/servers/kafka/kfake
$GO build -o "$run/soak-tool" ./soak/tool

echo "== soak: backends in $run"
redis_start
pg start
pg psql -d rffi -c "CREATE TABLE soak_inserts (id bigserial PRIMARY KEY, token text NOT NULL);
    ALTER TABLE soak_inserts OWNER TO rffi;"
grpc_start
kafka_start
# the broker that goes down is the one leading most of the topic's partitions
bounced_broker=$("$run/soak-tool" kafka-leader -brokers "127.0.0.1:${kafka_ports[0]}" -topic soak)
echo "soak: the Kafka broker on port $bounced_broker will go down"

user=""
[ "$(id -u)" -eq 0 ] && user="user nobody nogroup;"
brokers=$(printf '"127.0.0.1:%s", ' "${kafka_ports[@]}")
sed -e "s|@ROOT@|$root|g" -e "s|@RUN@|$run|g" -e "s|@USER@|$user|g" \
    -e "s|@NGINX_PORT@|$nginx_port|g" -e "s|@REDIS_PORT@|$redis_port|g" \
    -e "s|@PG_PORT@|$pg_port|g" -e "s|@GRPC_PORT@|$grpc_port|g" \
    -e "s|@KAFKA_BROKERS@|${brokers%, }|g" soak/nginx.conf >"$run/nginx.conf"
"$nginx_bin" -p "$run/" -c "$run/nginx.conf"
wait_port "$nginx_port" nginx
nginx_pid=$(cat "$run/nginx.pid")
base=http://127.0.0.1:$nginx_port
for loc in redis pg kafka kafka-sync grpc; do
    for _ in 1 2 3 4 5 6; do
        curl -fsS -o /dev/null --max-time 10 "$base/$loc" || { echo "soak: /$loc fails before the soak" >&2; exit 1; }
    done
done

export SOAK_PG_DSN="postgres://rffi:rffi_pw@127.0.0.1:$pg_port/rffi?sslmode=disable"
tool() { "$run/soak-tool" -run "$run" -base "$base" "$@"; }

# probes: each backend's location every 50 ms, with timestamps
"$run/soak-tool" -run "$run" -base "$base" probe &
probe_pid=$!
pids_to_kill+=("$probe_pid")

# load(seconds, tag, locations...): one wrk per location, 2 connections
# each, paced (soak/pace.lua)
export SOAK_PACE_MS=${SOAK_PACE_MS:-1}
load() {
    local secs=$1 tag=$2 loc
    shift 2
    [ $# -gt 0 ] || set -- redis pg kafka grpc
    local extra=()
    # warm-up: a connection per request, so both workers get some
    [ "$tag" = warmup ] && extra=(-H "Connection: close")
    for loc in "$@"; do
        wrk -t1 -c2 -d"${secs}s" --timeout 30s -s soak/pace.lua "${extra[@]}" "$base/$loc" \
            >"$run/wrk-$tag-$loc.txt" 2>&1 &
        pids_to_kill+=("$!")
    done
}

# bounce_loop(seconds): restart the backends one after the other
bounce_loop() {
    local end=$(($(date +%s) + $1)) b
    while :; do
        for b in redis postgres grpc kafka; do
            [ $(($(date +%s) + outage + 1)) -lt "$end" ] || return 0
            event down "$b"
            case $b in
                redis) redis_stop; sleep "$outage"; event starting redis; redis_start ;;
                postgres) pg restart >/dev/null ;; # down for as long as the restart takes
                grpc) grpc_stop; sleep "$outage"; event starting grpc; grpc_start ;;
                kafka)
                    kafka_broker "$kafka_down"; sleep "$outage"; event starting kafka
                    if [ "$kafka_down" = stop ]; then kafka_broker start; else kafka_broker resume; fi ;;
            esac
            event up "$b"
            sleep "$gap"
        done
    done
}

hup_loop() {
    local end=$(($(date +%s) + $1))
    while sleep "$hup_every"; [ "$(date +%s)" -lt "$end" ]; do
        kill -HUP "$nginx_pid"
        event hup
    done
}

quiet() { # stop probing, let every call finish, sample every worker
    touch "$run/probe.pause"
    sleep "${2:-4}"
    tool snapshot -label "$1" "${@:3}"
}

# ---------------------------------------------------------------- chaos

echo "== soak: chaos phase, $chaos s (backend restarts, HUP every ${hup_every} s)"
event phase chaos
load "$chaos" chaos
hup_loop "$chaos" &
hup_pid=$!
bounce_loop "$chaos"
wait "$hup_pid"
wait_wrk() { while pgrep -x wrk -P $$ >/dev/null; do sleep 0.5; done; }
wait_wrk
event phase chaos-end

# ---------------------------------------------------------------- steady

echo "== soak: steady phase, $steady s (one worker generation, backend restarts, no HUP)"
touch "$run/probe.pause"
kill -HUP "$nginx_pid"
event hup
sleep 3
# every location, the probes' too, until both workers hold every runtime
# (redis, postgres, 2 Kafka producers, grpc and its connection): the idle
# goroutine count is taken with every runtime open
for try in 1 2 3 4 5 6 7 8; do
    load 3 warmup redis pg kafka grpc kafka-sync
    wait_wrk
    sleep 0.6
    if tool warm -handles 6; then break; fi
    [ $try -lt 8 ] || { echo "soak: the workers did not warm up" >&2; exit 1; }
done
quiet idle
warm=$((steady / 4))
event phase steady
rm -f "$run/probe.pause"
load "$steady" steady
sleep "$warm"
event warmed-up
bounce_loop $((steady - warm - 2))
wait_wrk
event phase steady-end
# -settle: until no worker has more goroutines than idle, for up to the
# Kafka Transport's idle timeout (60 s, modules/kafka/options.go) and a bit:
# a connection the load or an outage opened closes by then; a leak stays
quiet final 5 -settle 65s

# ---------------------------------------------------------------- checks

echo "== soak: checks"
tool pg-activity
kill "$probe_pid" 2>/dev/null || true
wait "$probe_pid" || true
# a graceful stop flushes what the producers still hold
kill -QUIT "$nginx_pid"
for _ in $(seq 1 300); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
rc=0
# 2000: the largest timeout in soak/nginx.conf's SOAK table (PostgreSQL)
tool report -timeout 2000 -duration "$duration" -chaos "$chaos" -steady "$steady" \
    -brokers "$(IFS=,; echo "${kafka_ports[*]/#/127.0.0.1:}")" \
    -command "${SOAK_COMMAND:-SOAK_DURATION=$duration soak/run.sh}" >"$run/report.md" || rc=$?
cat "$run/report.md"
if [ -x scripts/fuzz.sh ] && [ "${SOAK_FUZZ:-1}" = 1 ]; then
    echo "== soak: scripts/fuzz.sh 60"
    ./scripts/fuzz.sh 60 || rc=1
elif [ "${SOAK_FUZZ:-1}" = 1 ]; then
    echo "== soak: scripts/fuzz.sh is not present: fuzzing not run"
fi
if [ "${SOAK_DOC:-0}" = 1 ]; then
    # SOAK_NOTE: a line about the machine, put above the figures
    "$run/soak-tool" doc -report "$run/report.md" -out docs/RELIABILITY.md -note "${SOAK_NOTE:-}"
    echo "== soak: figures written into docs/RELIABILITY.md"
fi
[ $rc -eq 0 ] && echo "== soak: PASS" || echo "== soak: FAIL"
exit $rc
