#!/usr/bin/env bash
# bench/grpc: resty.ffi.grpc through ONE nginx worker, printed as a
# Markdown section on stdout (progress goes to stderr).
#
#  1. unary SayHello, wrk -t1 -c50 10 s: resty.ffi.grpc vs nginx
#     proxy_pass (keepalive) to bench/grpc/sidecar, a Go HTTP service making
#     the same gRPC call with grpc-go and returning the same bytes;
#  2. 100k sequential unary calls from one request vs bench/grpc/native, a
#     plain Go program making the same 100k calls against the same server;
#  3. a server stream of 1000 small messages: messages/s into Lua.
#
# The gRPC test server (t/servers/grpc) is started if it is not running.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export PATH=$PATH:/usr/local/go/bin
export RFFI_RUN=${RFFI_RUN:-$root/.run}
work=$root/bench/.work/grpc
port=8188
duration=${BENCH_DURATION:-10}
seq_n=${BENCH_GRPC_SEQ:-100000}
mkdir -p "$work/nginx/conf" "$work/nginx/logs"
chmod 755 "$root/bench/.work" "$work" 2>/dev/null || true

started_backend=0
sidecar_pid=
cleanup() {
    if [ -f "$work/nginx/logs/nginx.pid" ]; then
        nginx -p "$work/nginx" -c conf/nginx.conf -s stop 2>/dev/null || true
        sleep 0.3
    fi
    if [ -n "$sidecar_pid" ]; then kill "$sidecar_pid" 2>/dev/null || true; wait "$sidecar_pid" 2>/dev/null || true; fi
    if [ $started_backend -eq 1 ]; then t/servers/grpc/ctl stop >&2 || true; fi
}
trap cleanup EXIT

if ! t/servers/grpc/ctl status >/dev/null 2>&1; then
    t/servers/grpc/ctl start >&2
    started_backend=1
fi
[ -f build/resty_ffi_go.so ] || make build >&2
go build -o "$work/native" ./bench/grpc/native
go build -o "$work/sidecar" ./bench/grpc/sidecar
sock=$work/sidecar.sock
"$work/sidecar" -listen "unix:$sock" -proto t/servers/grpc/proto 2>"$work/sidecar.log" &
sidecar_pid=$!

cat > "$work/nginx/conf/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
daemon on;
master_process on;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    lua_package_path "$root/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "$root/build/?.so;;";
    upstream sidecar {
        server unix:$sock;
        keepalive 64;
    }
    init_by_lua_block {
        local grpc = require "resty.ffi.grpc"
        local conn
        function get_conn()
            if not conn then
                assert(grpc.load("rffitest/v1/test.proto", { "$root/t/servers/grpc/proto" }))
                conn = assert(grpc.connect("127.0.0.1:15051"))
            end
            return conn
        end
    }
    server {
        listen 127.0.0.1:$port;
        location = /ffi {
            content_by_lua_block {
                local res, err = get_conn():call("rffitest.v1.TestService", "SayHello", { name = "bench" })
                if not res then
                    ngx.status = 502
                    ngx.say(err)
                    return
                end
                ngx.header["Content-Type"] = "text/plain"
                ngx.print(res.message)
            }
        }
        location = /proxy {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://sidecar/hello?name=bench;
        }
        location = /seq {
            content_by_lua_block {
                local conn = get_conn()
                local n = tonumber(ngx.var.arg_n) or 100000
                local req = { name = "bench" }
                ngx.update_time()
                local start = ngx.now()
                for i = 1, n do
                    local res, err = conn:call("rffitest.v1.TestService", "SayHello", req)
                    if not res or res.message ~= "Hello bench" then
                        ngx.say("call ", i, ": ", err)
                        return
                    end
                end
                ngx.update_time()
                local el = ngx.now() - start
                ngx.say(n, " ", string.format("%.3f %.0f", el, n / el))
            }
        }
        location = /stream {
            content_by_lua_block {
                local conn = get_conn()
                local rounds = tonumber(ngx.var.arg_rounds) or 20
                local total = 0
                ngx.update_time()
                local start = ngx.now()
                for _ = 1, rounds do
                    local s = assert(conn:server_stream("rffitest.v1.TestService", "ServerStream",
                                                        { count = 1000, payload = "small" }))
                    while true do
                        local msg, err = s:recv(5000)
                        if not msg then
                            if err ~= "eof" then ngx.say("recv: ", err) return end
                            break
                        end
                        total = total + 1
                    end
                    s:close()
                end
                ngx.update_time()
                local el = ngx.now() - start
                ngx.say(total, " ", string.format("%.3f %.0f", el, total / el))
            }
        }
    }
}
CONF
nginx -p "$work/nginx" -c conf/nginx.conf
for _ in $(seq 1 50); do
    [ -S "$sock" ] && curl -sf "http://127.0.0.1:$port/proxy" >/dev/null 2>&1 && break
    sleep 0.1
done
check() {
    local got
    got=$(curl -s "http://127.0.0.1:$port/$1")
    if [ "$got" != "Hello bench" ]; then
        echo "bench/grpc: /$1 answered: $got" >&2
        exit 1
    fi
}
check ffi
check proxy

# wrk_run path -> "req/s p99"
wrk_run() {
    wrk -t1 -c50 -d3s "http://127.0.0.1:$port/$1" >/dev/null 2>&1 # warm up
    local out
    out=$(wrk -t1 -c50 -d"${duration}s" --latency "http://127.0.0.1:$port/$1")
    echo "$out" | grep -q "Non-2xx" && { echo "bench/grpc: non-2xx answers on /$1" >&2; echo "$out" >&2; exit 1; }
    local rps p99
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    echo "$rps $p99"
}

echo "bench/grpc: unary, wrk -c50 (resty.ffi.grpc)..." >&2
read -r ffi_rps ffi_p99 <<<"$(wrk_run ffi)"
echo "bench/grpc: unary, wrk -c50 (proxy_pass to the Go sidecar)..." >&2
read -r proxy_rps proxy_p99 <<<"$(wrk_run proxy)"

echo "bench/grpc: $seq_n sequential calls (resty.ffi.grpc)..." >&2
curl -s "http://127.0.0.1:$port/seq?n=2000" >/dev/null # warm up
read -r _ seq_secs seq_rate <<<"$(curl -s -m 600 "http://127.0.0.1:$port/seq?n=$seq_n")"
echo "bench/grpc: $seq_n sequential calls (plain Go)..." >&2
read -r _ nat_secs nat_rate <<<"$("$work/native" -n "$seq_n" -proto t/servers/grpc/proto)"

echo "bench/grpc: server stream of 1000 messages..." >&2
curl -s "http://127.0.0.1:$port/stream?rounds=2" >/dev/null # warm up
read -r st_total st_secs st_rate <<<"$(curl -s -m 600 "http://127.0.0.1:$port/stream?rounds=20")"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
unary_ratio=$(ratio "$ffi_rps" "$proxy_rps")
seq_ratio=$(ratio "$seq_rate" "$nat_rate")

cat <<MD
## gRPC (resty.ffi.grpc)

One nginx worker; the project's gRPC test server (t/servers/grpc) on 127.0.0.1:15051,
SayHello with a small message. Machine: $(nproc) CPUs.

| measurement | resty.ffi.grpc | comparison | ratio | target |
|---|---|---|---|---|
| unary, wrk -t1 -c50 ${duration} s (req/s) | $ffi_rps (p99 $ffi_p99) | proxy_pass to Go sidecar: $proxy_rps (p99 $proxy_p99) | ${unary_ratio}x | >= 1.5x |
| $seq_n sequential unary calls, one request (calls/s) | $seq_rate ($seq_secs s) | plain grpc-go program: $nat_rate ($nat_secs s) | ${seq_ratio}x | >= 0.85x |
| server stream, 20 x 1000 small messages (messages/s into Lua) | $st_rate ($st_total in $st_secs s) | | | |

Commands: \`wrk -t1 -c50 -d${duration}s --latency http://127.0.0.1:$port/ffi\` and \`.../proxy\`
(nginx \`proxy_pass\` with \`keepalive 64\` to bench/grpc/sidecar on a Unix socket);
\`curl http://127.0.0.1:$port/seq?n=$seq_n\` vs \`bench/grpc/native -n $seq_n\`
(both build dynamicpb messages from the same .proto compiled at run time);
\`curl http://127.0.0.1:$port/stream?rounds=20\`. Config: bench/grpc/run.sh.
MD
