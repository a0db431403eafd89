#!/usr/bin/env bash
# PostgreSQL benchmark: resty.ffi.postgres in one nginx worker vs nginx
# proxy_pass (keepalive) to a Go HTTP sidecar with pgx on a Unix socket
# (same pool size, same response bytes), for `SELECT $1::int` and a
# 100-row x 5-column query; then the bridge's own overhead: n sequential
# `SELECT $1::int` from one request vs a plain Go program with pgx.
# Prints a Markdown section.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
export PATH=$PATH:/usr/local/go/bin
work="$BENCH_ROOT/bench/.work/postgres"
rm -rf "$work"
mkdir -p "$work/conf" "$work/logs"
chmod 755 "$BENCH_ROOT/bench/.work" "$work"
port=${PG_BENCH_PORT:-8186}
sock="$work/sidecar.sock"
pool=${PG_BENCH_POOL:-8}
seq_n=${PG_BENCH_SEQ:-100000}
dsn="postgres://rffi:rffi_pw@127.0.0.1:15432/rffi?sslmode=disable"
rows_sql="SELECT i AS id, 'name-' || i AS name, i * 1000 AS n, i % 2 = 0 AS flag, (date '2024-01-01' + i)::text AS d FROM generate_series(1, 100) AS i"

ctl="$BENCH_ROOT/t/servers/postgres/ctl"
started_pg=0
if ! "$ctl" status >/dev/null 2>&1; then
    "$ctl" start >&2
    started_pg=1
fi

(cd "$BENCH_ROOT" && go build -o "$work/sidecar" ./bench/postgres/sidecar && go build -o "$work/native" ./bench/postgres/native)
on_server_cpu_bg "$work/sidecar" -socket "$sock" -dsn "$dsn" -conns "$pool"
sidecar=$!
cleanup() {
    kill $sidecar 2>/dev/null || true
    stop_nginx "$work"
    if [ $started_pg -eq 1 ]; then "$ctl" stop >&2; fi
}
trap cleanup EXIT

{
    nginx_main_preamble
    cat <<_EOC_
http {
$(lua_http_preamble)
    init_by_lua_block {
        PG = { dsn = "$dsn", max_conns = $pool }
        ROWS_SQL = "$rows_sql"
    }
    init_worker_by_lua_block {
        assert(require("resty.ffi").load())
    }
    upstream sidecar {
        server unix:$sock;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$port;
        location = /ffi/int {
            content_by_lua_block {
                local db = require("resty.ffi.postgres").new(PG)
                local v, err = db:query_value("SELECT \$1::int", tonumber(ngx.var.arg_v))
                if not v then ngx.status = 500 ngx.say(err) return end
                local body = tostring(v)
                ngx.header.content_length = #body
                ngx.print(body)
            }
        }
        location = /ffi/rows {
            content_by_lua_block {
                local db = require("resty.ffi.postgres").new(PG)
                local rows, err = db:query(ROWS_SQL)
                if not rows then ngx.status = 500 ngx.say(err) return end
                local buf, n = {}, 0
                for i = 1, #rows do
                    local r = rows[i]
                    buf[n + 1] = r.id
                    buf[n + 2] = "\t"
                    buf[n + 3] = r.name
                    buf[n + 4] = "\t"
                    buf[n + 5] = r.n
                    buf[n + 6] = "\t"
                    buf[n + 7] = tostring(r.flag)
                    buf[n + 8] = "\t"
                    buf[n + 9] = r.d
                    buf[n + 10] = "\n"
                    n = n + 10
                end
                local body = table.concat(buf)
                ngx.header.content_length = #body
                ngx.print(body)
            }
        }
        location = /proxy/int {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://sidecar/int\$is_args\$args;
        }
        location = /proxy/rows {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://sidecar/rows;
        }
        location = /ffi/seq {
            content_by_lua_block {
                local db = require("resty.ffi.postgres").new(PG)
                local n = tonumber(ngx.var.arg_n)
                for i = 1, 1000 do assert(db:query_value("SELECT \$1::int", i)) end
                ngx.update_time()
                local t0 = ngx.now()
                for i = 1, n do
                    local v, err = db:query_value("SELECT \$1::int", i)
                    if v ~= i then ngx.say("error: ", err) return end
                end
                ngx.update_time()
                ngx.say(string.format("%.0f", n / (ngx.now() - t0)))
            }
        }
    }
}
_EOC_
} > "$work/conf/nginx.conf"
start_nginx "$work"
for i in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
for u in int?v=42 rows; do
    a=$(curl -s "http://127.0.0.1:$port/ffi/$u")
    b=$(curl -s "http://127.0.0.1:$port/proxy/$u")
    if [ "$a" != "$b" ] || [ -z "$a" ]; then
        echo "bench: /ffi/$u and /proxy/$u differ: '${a:0:80}' vs '${b:0:80}'" >&2
        exit 1
    fi
    # the same framing too: a Content-Length, no chunked encoding
    for v in ffi proxy; do
        if ! curl -s -D - -o /dev/null "http://127.0.0.1:$port/$v/$u" | grep -qi '^content-length:'; then
            echo "bench: /$v/$u is not sent with a Content-Length" >&2
            exit 1
        fi
    done
done
rows_bytes=$(curl -s "http://127.0.0.1:$port/ffi/rows" | wc -c)

bench_variants ffi_int="http://127.0.0.1:$port/ffi/int?v=42" proxy_int="http://127.0.0.1:$port/proxy/int?v=42" \
    ffi_rows="http://127.0.0.1:$port/ffi/rows" proxy_rows="http://127.0.0.1:$port/proxy/rows"

# sequential: the bridge vs plain Go, alternating, median of the rounds
seq_ffi=() seq_go=()
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    seq_ffi+=("$(curl -s -m 600 "http://127.0.0.1:$port/ffi/seq?n=$seq_n")")
    seq_go+=("$(on_server_cpu "$work/native" -dsn "$dsn" -n "$seq_n")")
    echo "bench: round $round sequential: ffi ${seq_ffi[-1]}/s, native ${seq_go[-1]}/s" >&2
done
crashes=$(grep -c "exited on signal" "$work/logs/error.log" || true)
sf=$(median "${seq_ffi[@]}")
sg=$(median "${seq_go[@]}")

cat <<_EOF_
## PostgreSQL: resty.ffi.postgres vs a Go sidecar (pgx), and vs plain Go

One nginx worker, \`wrk -t1 -c$BENCH_CONNS -d${BENCH_SECONDS}s --latency URL\`; placement: $(bench_setup)
(the sidecar \`bench/postgres/sidecar\`, pgxpool, and the plain Go program of the sequential test placed like the worker);
PostgreSQL 15 from \`t/servers/postgres/ctl\` on the same machine, never pinned; pool size $pool on both sides; median of $BENCH_ROUNDS rounds after a ${BENCH_WARMUP} s warm-up.
Both variants return the same bytes (\`SELECT \$1::int\`: the number; rows: $rows_bytes bytes of tab-separated text), with a Content-Length (the Lua handlers set it; the sidecar sets it on rows, past the 2 KiB Go's net/http buffers before it falls back to chunked encoding).

| query | resty.ffi.postgres req/s | p99 (ms) | proxy_pass to Go sidecar req/s | p99 (ms) | ratio |
|---|---:|---:|---:|---:|---:|
| \`SELECT \$1::int\` | ${BENCH_RPS[ffi_int]} | ${BENCH_P99[ffi_int]} | ${BENCH_RPS[proxy_int]} | ${BENCH_P99[proxy_int]} | **$(ratio "${BENCH_RPS[ffi_int]}" "${BENCH_RPS[proxy_int]}")** |
| 100 rows x 5 columns | ${BENCH_RPS[ffi_rows]} | ${BENCH_P99[ffi_rows]} | ${BENCH_RPS[proxy_rows]} | ${BENCH_P99[proxy_rows]} | **$(ratio "${BENCH_RPS[ffi_rows]}" "${BENCH_RPS[proxy_rows]}")** |

Target: >= 1.5x the sidecar on both. Round by round: \`SELECT \$1::int\` $(round_ratios ffi_int proxy_int); rows $(round_ratios ffi_rows proxy_rows).

Sequential \`SELECT \$1::int\` ($seq_n queries, one at a time; median of $BENCH_ROUNDS rounds):

| variant | queries/s |
|---|---:|
| one nginx request through resty.ffi.postgres (\`/ffi/seq\`) | $sf |
| plain Go with pgxpool (\`bench/postgres/native\`, placed like the worker) | $sg |

- bridge / native = **$(ratio "$sf" "$sg")** (target >= 0.8); rounds (queries/s): bridge ${seq_ffi[*]}; plain Go ${seq_go[*]}
$( [ "${crashes:-0}" -gt 0 ] && echo "- **WARNING: the nginx worker crashed $crashes time(s) during these runs (see $work/logs/error.log); the figures above are not valid.**" )

_EOF_
