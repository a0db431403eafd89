#!/usr/bin/env bash
# Kafka benchmark (resty.ffi.kafka vs lua-resty-kafka vs no Kafka), one
# nginx worker, against the kfake test cluster (t/servers/kafka/ctl):
#   1. log phase: one 200-byte message per request with send_async, vs
#      lua-resty-kafka's async producer (Debian lua-nginx-kafka, as
#      nginx.kafka.producer), vs the same handler without Kafka;
#   2. one request sending 10k messages one by one, synchronously, acks=all,
#      vs lua-resty-kafka's sync producer (required_acks = -1);
#   3. consumer: fetch_batch of 200-byte messages into Lua tables.
# The Debian lua-resty-kafka (0.07) speaks Produce v0-v2 only; kfake accepts
# v2 through the conversion in t/servers/kafka/kfake/legacy.go, so it is
# configured with api_version = 2 (message sets, magic 1).
# Prints a Markdown section.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
work="$BENCH_ROOT/bench/.work/kafka"
rm -rf "$work"
mkdir -p "$work/conf" "$work/logs"
chmod 755 "$BENCH_ROOT/bench/.work" "$work"
port=${KAFKA_BENCH_PORT:-8187}
ctl="$BENCH_ROOT/t/servers/kafka/ctl"
started_kafka=0
if ! "$ctl" status >/dev/null 2>&1; then
    "$ctl" start >&2
    started_kafka=1
fi
cleanup() {
    stop_nginx "$work"
    if [ $started_kafka -eq 1 ]; then "$ctl" stop >&2; fi
}
trap cleanup EXIT

{
    nginx_main_preamble
    [ -n "${KAFKA_BENCH_GOGC:-}" ] && echo "env GOGC=$KAFKA_BENCH_GOGC;"
    cat <<_EOC_
http {
$(lua_http_preamble)
    keepalive_requests 10000000;
    lua_socket_log_errors off;
    init_by_lua_block {
        BROKERS = { "127.0.0.1:19092", "127.0.0.1:19093", "127.0.0.1:19094" }
        RK_BROKERS = { { host = "127.0.0.1", port = 19092 }, { host = "127.0.0.1", port = 19093 },
                       { host = "127.0.0.1", port = 19094 } }
        TOPIC = "rffi-bench"
        MSG = string.rep("x", 200)
        FFI_ASYNC = { brokers = BROKERS, acks = "leader", max_buffering = 1000000, ${KAFKA_FFI_OPTS:-} }
        FFI_SYNC = { brokers = BROKERS, acks = "all" }
        RK_ASYNC = { producer_type = "async", required_acks = 1, max_buffering = 1000000, api_version = 2 }
        RK_SYNC = { producer_type = "sync", required_acks = -1, api_version = 2 }
    }
    init_worker_by_lua_block {
        require("resty.ffi").load()
        -- create the producers outside the measurement
        ngx.timer.at(0, function()
            local kafka = require "resty.ffi.kafka"
            local p, err = kafka.producer(FFI_ASYNC)
            if not p then ngx.log(ngx.ERR, "producer: ", err) end
            require("nginx.kafka.producer"):new(RK_BROKERS, RK_ASYNC)
        end)
    }
    server {
        listen 127.0.0.1:$port;
        location = /none {
            content_by_lua_block { ngx.say("ok") }
        }
        location = /ffi {
            content_by_lua_block { ngx.say("ok") }
            log_by_lua_block {
                local p = require("resty.ffi.kafka").producer(FFI_ASYNC)
                local ok, err = p:send_async(TOPIC, nil, MSG)
                if not ok then ngx.log(ngx.ERR, "send_async: ", err) end
            }
        }
        location = /rk {
            content_by_lua_block { ngx.say("ok") }
            log_by_lua_block {
                local p = require("nginx.kafka.producer"):new(RK_BROKERS, RK_ASYNC)
                local ok, err = p:send(TOPIC, nil, MSG)
                if not ok then ngx.log(ngx.ERR, "lua-resty-kafka send: ", err) end
            }
        }
        location = /flush {
            content_by_lua_block {
                local p = require("resty.ffi.kafka").producer(FFI_ASYNC)
                ngx.say(p:flush(30000))
                local st = p:stats()
                ngx.say("ffi sent ", st.async_sent, " failed ", st.failed, " refused ", st.refused)
            }
        }
        location = /sync_ffi {
            content_by_lua_block {
                local p = require("resty.ffi.kafka").producer(FFI_SYNC)
                local n = tonumber(ngx.var.arg_n) or 10000
                ngx.update_time()
                local t0 = ngx.now()
                for i = 1, n do
                    local ok, err = p:send(TOPIC, nil, MSG)
                    if not ok then ngx.say("error ", err) return end
                end
                ngx.update_time()
                ngx.say(n / (ngx.now() - t0))
            }
        }
        location = /sync_rk {
            content_by_lua_block {
                local p = require("nginx.kafka.producer"):new(RK_BROKERS, RK_SYNC)
                local n = tonumber(ngx.var.arg_n) or 10000
                ngx.update_time()
                local t0 = ngx.now()
                for i = 1, n do
                    local ok, err = p:send(TOPIC, nil, MSG)
                    if not ok then ngx.say("error ", err) return end
                end
                ngx.update_time()
                ngx.say(n / (ngx.now() - t0))
            }
        }
        # sanity check: lua-resty-kafka's messages really land (kfake converts
        # its Produce v2 message sets) and read back intact
        location = /verify_rk {
            content_by_lua_block {
                local kafka = require "resty.ffi.kafka"
                local topic = "rk-verify-" .. ngx.now() * 1000
                assert(kafka.create_topic({ brokers = BROKERS }, topic, 1, 1))
                local p = require("nginx.kafka.producer"):new(RK_BROKERS, RK_SYNC)
                for i = 1, 3 do assert(p:send(topic, "k" .. i, "v" .. i)) end
                local c = assert(kafka.consumer{ brokers = BROKERS, topic = topic, partition = 0 })
                local out = {}
                for i = 1, 3 do
                    local m = assert(c:fetch(5000))
                    out[#out + 1] = m.key .. "=" .. m.value
                end
                c:close()
                ngx.say(table.concat(out, " "))
            }
        }
        location = /consume {
            content_by_lua_block {
                local kafka = require "resty.ffi.kafka"
                local topic = ngx.var.arg_topic
                local n = tonumber(ngx.var.arg_n)
                local c = assert(kafka.consumer{ brokers = BROKERS, topic = topic, partition = 0 })
                assert(c:fetch(10000)) -- connected, first message in
                ngx.update_time()
                local t0 = ngx.now()
                local got, bytes, calls = 1, 0, 0
                while got < n do
                    local batch, err = c:fetch_batch(2000, 5000)
                    if not batch then ngx.say("error ", err) return end
                    for i = 1, #batch do bytes = bytes + #batch[i].value end
                    got = got + #batch
                    calls = calls + 1
                end
                ngx.update_time()
                c:close()
                ngx.say(string.format("%.0f %.0f", (got - 1) / (ngx.now() - t0), (got - 1) / calls))
            }
        }
        location = /fill {
            content_by_lua_block {
                local kafka = require "resty.ffi.kafka"
                local topic = ngx.var.arg_topic
                local n = tonumber(ngx.var.arg_n)
                assert(kafka.create_topic({ brokers = BROKERS }, topic, 1, 1))
                local p = kafka.producer{ brokers = BROKERS, acks = "leader", batch_size = 5000,
                                          max_buffering = 1000000 }
                for i = 1, n do assert(p:send_async(topic, nil, MSG)) end
                ngx.say(p:flush(60000))
            }
        }
    }
}
_EOC_
} > "$work/conf/nginx.conf"
start_nginx "$work"
sleep 1
check=$(curl -s "http://127.0.0.1:$port/verify_rk")
[ "$check" = "k1=v1 k2=v2 k3=v3" ] || { echo "bench: lua-resty-kafka check: '$check'" >&2; exit 1; }

if [ -n "${KAFKA_BENCH_SYNC_ONLY:-}" ]; then
    for i in 1 2 3; do
        echo "ffi $(curl -s -m 300 "http://127.0.0.1:$port/sync_ffi?n=5000") rk $(curl -s -m 300 "http://127.0.0.1:$port/sync_rk?n=5000")"
    done
    exit 0
fi
if [ -n "${KAFKA_BENCH_CONSUME_ONLY:-}" ]; then
    topic="bench-consume-$(date +%s)"
    curl -s -m 300 "http://127.0.0.1:$port/fill?topic=$topic&n=${KAFKA_BENCH_MESSAGES:-200000}" >/dev/null
    for i in 1 2 3; do curl -s -m 300 "http://127.0.0.1:$port/consume?topic=$topic&n=${KAFKA_BENCH_MESSAGES:-200000}"; done
    exit 0
fi
# 1. log phase
bench_variants none="http://127.0.0.1:$port/none" ffi="http://127.0.0.1:$port/ffi" \
    rk="http://127.0.0.1:$port/rk"
flushed=$(curl -s -m 120 "http://127.0.0.1:$port/flush" | tr '\n' ' ')
echo "bench: after the log-phase runs: $flushed" >&2

if [ -n "${KAFKA_BENCH_HOLD:-}" ]; then
    echo "bench: nginx kept running on $port; press enter to stop" >&2
    read -r
fi
if [ -n "${KAFKA_BENCH_LOG_ONLY:-}" ]; then
    echo "none ${BENCH_RPS[none]} ffi ${BENCH_RPS[ffi]} rk ${BENCH_RPS[rk]}"
    exit 0
fi

# 2. 10k sequential sync sends, rounds alternating
sync_ffi=() sync_rk=()
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    sync_ffi+=("$(curl -s -m 300 "http://127.0.0.1:$port/sync_ffi?n=10000")")
    sync_rk+=("$(curl -s -m 300 "http://127.0.0.1:$port/sync_rk?n=10000")")
    echo "bench: round $round sync: ffi ${sync_ffi[-1]} msg/s, lua-resty-kafka ${sync_rk[-1]} msg/s" >&2
done
s_ffi=$(median "${sync_ffi[@]}")
s_rk=$(median "${sync_rk[@]}")

# 3. consumer throughput
n=${KAFKA_BENCH_MESSAGES:-200000}
topic="bench-consume-$(date +%s)"
curl -s -m 300 "http://127.0.0.1:$port/fill?topic=$topic&n=$n" >/dev/null
consume=()
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    read -r rate per_call < <(curl -s -m 300 "http://127.0.0.1:$port/consume?topic=$topic&n=$n")
    consume+=("$rate")
    echo "bench: round $round fetch_batch: $rate msg/s, $per_call messages per call" >&2
done
c_rate=$(median "${consume[@]}")
rkver=$(dpkg-query -W -f='${Version}' lua-nginx-kafka 2>/dev/null || echo "?")
fmt() { awk -v v="$1" 'BEGIN {printf "%.0f", v}'; }

cat <<_EOF_
## Kafka: resty.ffi.kafka vs lua-resty-kafka vs no Kafka

One nginx worker, \`wrk -t1 -c$BENCH_CONNS -d${BENCH_SECONDS}s --latency\` ($(bench_setup); the kfake
cluster, 3 brokers, \`t/servers/kafka/ctl start\`, unpinned); median of $BENCH_ROUNDS rounds after a
${BENCH_WARMUP} s warm-up. Peer: Debian's lua-resty-kafka $rkver
(\`nginx.kafka.producer\`, api_version 2). Handler: \`ngx.say("ok")\`; the Kafka variants add one
200-byte message per request in \`log_by_lua\` (acks=leader, topic rffi-bench, 4 partitions).

| log-phase variant | req/s | p99 (ms) |
|---|---:|---:|
| no Kafka | ${BENCH_RPS[none]} | ${BENCH_P99[none]} |
| resty.ffi.kafka \`send_async\` | ${BENCH_RPS[ffi]} | ${BENCH_P99[ffi]} |
| lua-resty-kafka async \`send\` | ${BENCH_RPS[rk]} | ${BENCH_P99[rk]} |

- ffi / no Kafka = **$(ratio "${BENCH_RPS[ffi]}" "${BENCH_RPS[none]}")** (target >= 0.9)
- ffi / lua-resty-kafka = **$(ratio "${BENCH_RPS[ffi]}" "${BENCH_RPS[rk]}")** (target >= 1.2)
- after the runs: $flushed

| one request, 10k sequential sync sends (acks=all), 200 bytes | msg/s |
|---|---:|
| resty.ffi.kafka \`p:send\` | $(fmt "$s_ffi") |
| lua-resty-kafka sync \`send\` (required_acks = -1) | $(fmt "$s_rk") |

- ffi / lua-resty-kafka = **$(ratio "$s_ffi" "$s_rk")** (target >= 1.0); rounds: ffi ${sync_ffi[*]}, lua-resty-kafka ${sync_rk[*]}

| consumer | msg/s |
|---|---:|
| \`c:fetch_batch(2000, 5000)\` of $n 200-byte messages into Lua tables (1 partition) | $(fmt "$c_rate") |

- target >= 100000; rounds: ${consume[*]}

Commands: \`make bench\` (or \`BENCH_ONLY=kafka bench/run.sh\`); the handlers are in bench/kafka/run.sh.

_EOF_
