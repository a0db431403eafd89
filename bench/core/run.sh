#!/usr/bin/env bash
# Core benchmark: (a) a plain content_by_lua handler, (b) the same bytes
# through Go on the asynchronous path (echo runtime: a goroutine completes
# every call), (c) proxy_pass with keepalive to a Go HTTP sidecar on a Unix
# socket. Prints a Markdown section; then a memory check of a worker.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
work="$BENCH_ROOT/bench/.work/core"
rm -rf "$work"
mkdir -p "$work/conf" "$work/logs"
chmod 755 "$BENCH_ROOT/bench/.work" "$work"
port=${CORE_BENCH_PORT:-8181}
sock="$work/sidecar.sock"
body='{"id":12345,"name":"lua-resty-ffi-go","payload":"0123456789abcdef0123"}'

go build -o "$work/sidecar" "$here/sidecar"
on_server_cpu_bg "$work/sidecar" -socket "$sock" -body "$body"
sidecar=$!
trap 'kill $sidecar 2>/dev/null; stop_nginx "$work"' EXIT

{
    nginx_main_preamble
    cat <<_EOC_
http {
$(lua_http_preamble)
    init_worker_by_lua_block {
        assert(require("resty.ffi").load())
    }
    upstream sidecar {
        server unix:$sock;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$port;
        location = /plain {
            content_by_lua_block {
                ngx.print('$body')
            }
        }
        location = /echo {
            content_by_lua_block {
                local echo = require("resty.ffi").open("echo")
                ngx.print(echo:call("echo", '$body'))
            }
        }
        location = /sidecar {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://sidecar/echo;
        }
        location = /calls {
            content_by_lua_block {
                -- n echo calls from 50 light threads; the memory check
                local echo = require("resty.ffi").open("echo")
                local n = tonumber(ngx.var.arg_n)
                local threads = {}
                for t = 1, 50 do
                    threads[t] = ngx.thread.spawn(function()
                        for i = 1, n / 50 do
                            assert(echo:call("echo", '$body'))
                        end
                    end)
                end
                for t = 1, 50 do
                    ngx.thread.wait(threads[t])
                end
                local st = require("resty.ffi").stats()
                ngx.say(st.buffers_allocated, " ", st.buffers_freed, " ", st.in_flight)
            }
        }
    }
}
_EOC_
} > "$work/conf/nginx.conf"
start_nginx "$work"
for u in plain echo sidecar; do
    got=$(curl -s "http://127.0.0.1:$port/$u")
    [ "$got" = "$body" ] || { echo "bench: /$u answered '$got'" >&2; exit 1; }
done

bench_variants plain="http://127.0.0.1:$port/plain" echo="http://127.0.0.1:$port/echo" \
    sidecar="http://127.0.0.1:$port/sidecar"

# Memory: RSS of the worker after 10k, 100k and 1M echo calls.
worker=$(pgrep -P "$(cat "$work/logs/nginx.pid")" | head -1)
rss() { awk '/VmRSS/ {print $2}' "/proc/$worker/status"; }
# the wrk runs above made calls already: restart for a clean count
stop_nginx "$work"
start_nginx "$work"
worker=$(pgrep -P "$(cat "$work/logs/nginx.pid")" | head -1)
curl -s "http://127.0.0.1:$port/calls?n=10000" >/dev/null
rss_10k=$(rss)
curl -s "http://127.0.0.1:$port/calls?n=90000" >/dev/null
rss_100k=$(rss)
read -r alloc freed inflight < <(curl -s -m 600 "http://127.0.0.1:$port/calls?n=900000")
rss_1m=$(rss)
growth=$(awk -v a="$rss_100k" -v b="$rss_1m" 'BEGIN {printf "%.1f", (b - a) * 100 / a}')

cat <<_EOF_
## Core: echo through Go vs a plain handler vs a Go sidecar

One nginx worker, \`wrk -t1 -c$BENCH_CONNS -d${BENCH_SECONDS}s --latency\`, $(bench_setup);
median of $BENCH_ROUNDS rounds after a ${BENCH_WARMUP} s warm-up. Response: the same ${#body} bytes.

| variant | req/s | p99 (ms) |
|---|---:|---:|
| (a) plain \`content_by_lua\` | ${BENCH_RPS[plain]} | ${BENCH_P99[plain]} |
| (b) echo through Go (\`resty.ffi\`, goroutine per call) | ${BENCH_RPS[echo]} | ${BENCH_P99[echo]} |
| (c) \`proxy_pass\` to a Go HTTP sidecar (unix socket, keepalive) | ${BENCH_RPS[sidecar]} | ${BENCH_P99[sidecar]} |

- b/a = **$(ratio "${BENCH_RPS[echo]}" "${BENCH_RPS[plain]}")** (target >= 0.75); round by round: $(round_ratios echo plain)
- b/c = **$(ratio "${BENCH_RPS[echo]}" "${BENCH_RPS[sidecar]}")** (target >= 2.0); round by round: $(round_ratios echo sidecar)

Memory of the worker (VmRSS), echo calls from 50 light threads:

| after | RSS (KiB) |
|---|---:|
| 10k calls | $rss_10k |
| 100k calls | $rss_100k |
| 1M calls | $rss_1m |

- growth from 100k to 1M: **${growth}%** (target <= 5%); RSS at 10k: **$((rss_10k / 1024)) MiB** (target <= 30 MiB)
- C buffers after 1M calls: allocated $alloc, freed $freed, in flight $inflight

_EOF_
