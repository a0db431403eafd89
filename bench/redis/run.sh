#!/usr/bin/env bash
# Benchmarks of resty.ffi.redis (bench/RESULTS.md section "redis"):
#   1. GET of a 100-byte value, one per request
#   2. a pipeline of 100 GETs, one per request
#      each through ONE nginx worker with wrk -t1 -c50 for 10 s, resty.ffi.redis
#      vs lua-resty-redis (Debian's nginx.redis, with set_keepalive), same run
#   3. 100k sequential GETs from one request vs a plain Go program doing the
#      same GETs with go-redis (bench/redis/native), same run
# Prints a Markdown section on stdout; progress on stderr.
#   DURATION=10 CONNS=50 N=100000 bench/redis/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export PATH=$PATH:/usr/local/go/bin
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-50}
N=${N:-100000}
PORT=8185
work=$root/bench/.work/redis
mkdir -p "$work/nginx/conf" "$work/nginx/logs"
log() { echo "bench/redis: $*" >&2; }

[ -f build/resty_ffi_go.so ] || make build >&2
export RFFI_ROOT=$root RFFI_RUN=${RFFI_RUN:-$root/.run}
started=0
if ! redis-cli -p 16379 ping >/dev/null 2>&1; then
    t/servers/redis/ctl start >&2
    started=1
fi
nginx_pid=
cleanup() {
    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid"
        for _ in $(seq 1 100); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.05; done
    fi
    if [ $started -eq 1 ]; then t/servers/redis/ctl stop >&2; fi
}
trap cleanup EXIT

# data: one 100-byte value, and 100 keys of 100 bytes for the pipeline
value=$(printf 'v%.0s' $(seq 1 100))
{
    echo "SET bench:k100 $value"
    for i in $(seq 1 100); do echo "SET bench:p$i $value"; done
} | redis-cli -p 16379 >/dev/null

cat > "$work/nginx/conf/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
daemon off;
master_process on;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    lua_package_path "$root/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "$root/build/?.so;;";
    init_worker_by_lua_block { require("resty.ffi").load() }
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        location = /ffi/get {
            content_by_lua_block {
                local red = require("resty.ffi.redis"):new()
                red:set_timeout(1000)
                local ok, err = red:connect("127.0.0.1", 16379)
                if not ok then ngx.status = 500 ngx.say(err) return end
                local v, err = red:get("bench:k100")
                if not v then ngx.status = 500 ngx.say(err) return end
                red:set_keepalive(10000, 100)
                ngx.print(v)
            }
        }
        location = /peer/get {
            content_by_lua_block {
                local red = require("nginx.redis"):new()
                red:set_timeout(1000)
                local ok, err = red:connect("127.0.0.1", 16379)
                if not ok then ngx.status = 500 ngx.say(err) return end
                local v, err = red:get("bench:k100")
                if not v then ngx.status = 500 ngx.say(err) return end
                red:set_keepalive(10000, 100)
                ngx.print(v)
            }
        }
        location = /ffi/pipe {
            content_by_lua_block {
                local red = require("resty.ffi.redis"):new()
                red:set_timeout(1000)
                local ok, err = red:connect("127.0.0.1", 16379)
                if not ok then ngx.status = 500 ngx.say(err) return end
                red:init_pipeline(100)
                for i = 1, 100 do red:get("bench:p" .. i) end
                local res, err = red:commit_pipeline()
                if not res then ngx.status = 500 ngx.say(err) return end
                red:set_keepalive(10000, 100)
                ngx.print(#res, " ", res[100])
            }
        }
        location = /peer/pipe {
            content_by_lua_block {
                local red = require("nginx.redis"):new()
                red:set_timeout(1000)
                local ok, err = red:connect("127.0.0.1", 16379)
                if not ok then ngx.status = 500 ngx.say(err) return end
                red:init_pipeline(100)
                for i = 1, 100 do red:get("bench:p" .. i) end
                local res, err = red:commit_pipeline()
                if not res then ngx.status = 500 ngx.say(err) return end
                red:set_keepalive(10000, 100)
                ngx.print(#res, " ", res[100])
            }
        }
        location = /ffi/seq {
            content_by_lua_block {
                local n = tonumber(ngx.var.arg_n)
                local red = require("resty.ffi.redis"):new()
                red:set_timeout(1000)
                assert(red:connect("127.0.0.1", 16379))
                for i = 1, 1000 do red:get("bench:k100") end
                ngx.update_time()
                local t0 = ngx.now()
                for i = 1, n do
                    local v, err = red:get("bench:k100")
                    if not v then ngx.say("error: ", err) return end
                end
                ngx.update_time()
                ngx.say(string.format("%.0f", n / (ngx.now() - t0)))
            }
        }
    }
}
CONF
nginx -p "$work/nginx" -c conf/nginx.conf &
nginx_pid=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/ffi/get" >/dev/null 2>&1 && break
    sleep 0.05
done
for p in ffi/get peer/get ffi/pipe peer/pipe; do
    out=$(curl -sf "http://127.0.0.1:$PORT/$p") || { log "/$p failed: $out"; exit 1; }
done

# run_wrk <path> -> "req/s p99"
run_wrk() {
    wrk -t1 -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:$PORT/$1" >/dev/null
    local out rps p99 non2xx
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/$1")
    non2xx=$(echo "$out" | sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p')
    if [ -n "$non2xx" ]; then log "/$1: $non2xx failed responses"; fi
    rps=$(echo "$out" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    echo "$rps $p99"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

log "GET: resty.ffi.redis"; read -r ffi_get ffi_get_p99 < <(run_wrk ffi/get)
log "GET: nginx.redis"; read -r peer_get peer_get_p99 < <(run_wrk peer/get)
log "pipeline: resty.ffi.redis"; read -r ffi_pipe ffi_pipe_p99 < <(run_wrk ffi/pipe)
log "pipeline: nginx.redis"; read -r peer_pipe peer_pipe_p99 < <(run_wrk peer/pipe)

log "sequential: building the native program"
go build -o "$work/native" ./bench/redis/native
log "sequential: resty.ffi.redis"
ffi_seq=$(curl -sf -m 600 "http://127.0.0.1:$PORT/ffi/seq?n=$N")
log "sequential: native go-redis"
native_seq=$("$work/native" -addr 127.0.0.1:16379 -key bench:k100 -n "$N")

cat <<MD
## redis

resty.ffi.redis vs lua-resty-redis (Debian's \`nginx.redis\`, with \`set_keepalive\`), one nginx
worker, redis-server on 127.0.0.1:16379, a 100-byte value; \`wrk -t1 -c$CONNS -d${DURATION}s --latency\`
after ${WARMUP} s of warm-up, each location in the same run.

| benchmark | resty.ffi.redis req/s | p99 | nginx.redis req/s | p99 | ratio |
| --- | ---: | ---: | ---: | ---: | ---: |
| GET, one per request | $ffi_get | $ffi_get_p99 | $peer_get | $peer_get_p99 | $(ratio "$ffi_get" "$peer_get")x |
| pipeline of 100 GETs per request | $ffi_pipe | $ffi_pipe_p99 | $peer_pipe | $peer_pipe_p99 | $(ratio "$ffi_pipe" "$peer_pipe")x |

The bridge's own overhead: $N sequential GETs from one request (\`/ffi/seq\`) vs a plain Go program
doing the same GETs with go-redis/v9 (\`bench/redis/native\`), same run.

| benchmark | resty.ffi.redis GET/s | native go-redis GET/s | ratio |
| --- | ---: | ---: | ---: |
| $N sequential GETs | $ffi_seq | $native_seq | $(ratio "$ffi_seq" "$native_seq")x |

Commands: \`bench/redis/run.sh\` (DURATION=$DURATION CONNS=$CONNS N=$N); the nginx configuration it
writes is bench/.work/redis/nginx/conf/nginx.conf.
MD
