#!/usr/bin/env bash
# bench/grpc: resty.ffi.grpc through ONE nginx worker, printed as a
# Markdown section on stdout (progress goes to stderr).
#
#  1. unary SayHello, wrk -t1 -c50 10 s: resty.ffi.grpc vs nginx
#     proxy_pass (keepalive) to bench/grpc/sidecar, a Go HTTP service making
#     the same gRPC call with grpc-go and returning the same bytes;
#  2. 100k sequential unary calls from one request vs bench/grpc/native, a
#     plain Go program making the same 100k calls against the same server
#     (alternating, BENCH_ROUNDS rounds of each, medians compared);
#  3. a server stream of 1000 small messages: messages/s into Lua.
#
# The gRPC test server (t/servers/grpc) is started if it is not running.
# Method (bench/lib.sh): rounds and medians; nothing pinned unless
# BENCH_PIN=1 (then the worker, the sidecar and the plain Go program of (2)
# share CPU $SERVER_CPU, wrk gets CPU $CLIENT_CPU). The gRPC test server
# (t/servers/grpc) is never pinned (it serves every variant alike); it is
# started if it is not running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
cd "$BENCH_ROOT"
root=$BENCH_ROOT
export PATH=$PATH:/usr/local/go/bin
export RFFI_RUN=${RFFI_RUN:-$root/.run}
work=$root/bench/.work/grpc
port=${GRPC_BENCH_PORT:-8188}
seq_n=${BENCH_GRPC_SEQ:-100000}
rm -rf "$work"
mkdir -p "$work/conf" "$work/logs"
chmod 755 "$root/bench/.work" "$work"

started_backend=0
sidecar_pid=
cleanup() {
    stop_nginx "$work" || true
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
on_server_cpu_bg "$work/sidecar" -listen "unix:$sock" -proto t/servers/grpc/proto >"$work/sidecar.log" 2>&1
sidecar_pid=$!

{
nginx_main_preamble
cat <<CONF
http {
$(lua_http_preamble)
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
                    local many = ngx.var.arg_many == "1"
                    while true do
                        local msg, err
                        if many then
                            msg, err = s:recv_many(1000, 5000)
                        else
                            msg, err = s:recv(5000)
                        end
                        if not msg then
                            if err ~= "eof" then ngx.say("recv: ", err) return end
                            break
                        end
                        total = total + (many and #msg or 1)
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
} > "$work/conf/nginx.conf"
start_nginx "$work"
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

bench_variants ffi="http://127.0.0.1:$port/ffi" proxy="http://127.0.0.1:$port/proxy"
ffi_rps=${BENCH_RPS[ffi]} ffi_p99=${BENCH_P99[ffi]}
proxy_rps=${BENCH_RPS[proxy]} proxy_p99=${BENCH_P99[proxy]}

# Sequential: the bridge and plain Go alternate, round by round, and the
# medians are compared: the machine's speed drifts over a minute, and one
# run of each would compare two different moments.
echo "bench/grpc: $seq_n sequential calls, $BENCH_ROUNDS rounds (resty.ffi.grpc, then plain Go)..." >&2
curl -s "http://127.0.0.1:$port/seq?n=2000" >/dev/null || true # warm up
seq_rates=() nat_rates=()
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    read -r _ _ rate <<<"$(curl -s -m 900 "http://127.0.0.1:$port/seq?n=$seq_n" || echo "- - 0")"
    seq_rates+=("$rate")
    read -r _ _ rate <<<"$(on_server_cpu "$work/native" -n "$seq_n" -proto t/servers/grpc/proto || echo "- - 0")"
    nat_rates+=("$rate")
    echo "bench/grpc: round $round sequential: ffi ${seq_rates[-1]}/s, native ${nat_rates[-1]}/s" >&2
done
seq_rate=$(median "${seq_rates[@]}")
nat_rate=$(median "${nat_rates[@]}")

echo "bench/grpc: server stream of 1000 messages..." >&2
curl -s "http://127.0.0.1:$port/stream?rounds=2" >/dev/null || true # warm up
read -r st_total st_secs st_rate <<<"$(curl -s -m 600 "http://127.0.0.1:$port/stream?rounds=20" || echo "- - failed")"
read -r stm_total stm_secs stm_rate <<<"$(curl -s -m 600 "http://127.0.0.1:$port/stream?rounds=20&many=1" || echo "- - failed")"

cat <<MD
## gRPC (resty.ffi.grpc)

One nginx worker, $(bench_setup); wrk -t1 -c$BENCH_CONNS -d${BENCH_SECONDS}s --latency; median of
$BENCH_ROUNDS rounds after a ${BENCH_WARMUP} s warm-up. Backend: the project's gRPC test server
(t/servers/grpc, never pinned) on 127.0.0.1:15051, \`SayHello\` with a small message; every
variant returns the same 11 bytes.

| measurement | resty.ffi.grpc | comparison | ratio | target |
|---|---:|---:|---:|---|
| unary, wrk -c$BENCH_CONNS (req/s, p99 ms) | $ffi_rps ($ffi_p99) | \`proxy_pass\` (keepalive) to a Go sidecar making the call: $proxy_rps ($proxy_p99) | **$(ratio "$ffi_rps" "$proxy_rps")** | >= 1.5 |
| $seq_n sequential unary calls from one request (calls/s, median of $BENCH_ROUNDS alternating rounds) | $seq_rate | plain grpc-go program, same calls: $nat_rate | **$(ratio "$seq_rate" "$nat_rate")** | >= 0.85 |
| server stream, 20 x 1000 small messages, \`stream:recv()\` per message (messages/s into Lua) | $st_rate ($st_total in $st_secs s) | | | |
| the same with \`stream:recv_many(1000)\` (messages/s into Lua) | $stm_rate ($stm_total in $stm_secs s) | | | |

Commands: \`/ffi\` and \`/proxy\` with wrk as above; \`curl http://127.0.0.1:$port/seq?n=$seq_n\` vs
\`bench/grpc/native -n $seq_n\` (both build dynamicpb messages from the same .proto compiled at
run time: the project has no generated code); \`curl http://127.0.0.1:$port/stream?rounds=20[&many=1]\`.
Sequential rounds (calls/s): resty.ffi.grpc ${seq_rates[*]}; plain Go ${nat_rates[*]}.
Configuration: bench/grpc/run.sh.$(grep -q "exited on signal" "$work/logs/error.log" 2>/dev/null && printf '\n\n**The nginx worker died during this run (%s); see bench/.work/grpc/logs/error.log.**' "$(grep -m1 "fatal error" "$work/logs/error.log")")

MD
