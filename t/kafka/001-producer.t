# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# resty.ffi.kafka producer: sync send and read back, send_async from the
# log phase of 10k requests, keys and balancers, headers, compression.
# Needs the kfake cluster: t/servers/kafka/ctl start.

use lib '.';
use t::FFI;

need_backend('kafka', '127.0.0.1', 19092);

repeat_each(1);
no_shuffle();
plan tests => repeat_each() * (blocks() * 3);

our $HttpConfig = <<'_EOC_';
    lua_shared_dict kafka_test 1m;
    init_by_lua_block {
        BROKERS = { "127.0.0.1:19092", "127.0.0.1:19093", "127.0.0.1:19094" }
        ASYNC = { brokers = BROKERS, batch_timeout = 5, max_buffering = 20000 }
        function fresh_topic(kafka, parts)
            local name = "t-" .. ngx.worker.pid() .. "-" .. ngx.now() * 1000 .. "-" .. math.random(1e6)
            local ok, err = kafka.create_topic({ brokers = BROKERS }, name, parts or 1, 1)
            if not ok then error("create_topic: " .. tostring(err)) end
            return name
        end
        -- hammer(path, n): n requests to this server over 10 keepalive
        -- connections, 100 pipelined at a time; returns how many got a 2xx
        function hammer(path, n)
            local port = ngx.var.server_port
            local per = math.ceil(n / 10)
            local done = 0
            local function conn(first, last)
                local sock = ngx.socket.tcp()
                sock:settimeout(10000)
                assert(sock:connect("127.0.0.1", port))
                local read_head = sock:receiveuntil("\r\n\r\n")
                local i = first
                while i <= last do
                    local j = math.min(i + 99, last)
                    local reqs = {}
                    for k = i, j do
                        reqs[#reqs + 1] = "GET " .. path .. k .. " HTTP/1.1\r\nHost: t\r\n\r\n"
                    end
                    assert(sock:send(table.concat(reqs)))
                    for _ = i, j do
                        local head = assert(read_head())
                        if head:find("^HTTP/1.1 2") then done = done + 1 end
                    end
                    i = j + 1
                end
                sock:close()
            end
            local threads = {}
            for c = 0, 9 do
                local first = c * per + 1
                local last = math.min(n, first + per - 1)
                if first <= last then
                    threads[#threads + 1] = ngx.thread.spawn(conn, first, last)
                end
            end
            for _, t in ipairs(threads) do assert(ngx.thread.wait(t)) end
            return done
        end
        -- read n messages of topic (all partitions) through a fresh group
        function read_all(kafka, topic, n, timeout)
            local c = assert(kafka.consumer{ brokers = BROKERS, topic = topic,
                                             group_id = topic .. "-reader" })
            local out = {}
            local deadline = ngx.now() + (timeout or 20)
            while #out < n and ngx.now() < deadline do
                local batch, err = c:fetch_batch(1000, 1000)
                if batch then
                    for _, m in ipairs(batch) do out[#out + 1] = m end
                elseif err ~= "timeout" then
                    error("fetch_batch: " .. err)
                end
            end
            -- nothing more than n
            local extra = c:fetch_batch(1000, 300)
            c:close()
            return out, extra and #extra or 0
        end
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: sync send waits for the ack; the message reads back with key, value, headers
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local topic = fresh_topic(kafka, 1)
            local p = assert(kafka.producer{ brokers = BROKERS, acks = "all" })
            for i = 1, 3 do
                local ok, err = p:send(topic, "k" .. i, "value " .. i, { trace = "t" .. i })
                if not ok then ngx.say("send failed: ", err) return end
            end
            local c = assert(kafka.consumer{ brokers = BROKERS, topic = topic, partition = 0 })
            for i = 1, 3 do
                local m, err = c:fetch(5000)
                if not m then ngx.say("fetch failed: ", err) return end
                ngx.say(m.topic == topic, " ", m.partition, " ", m.offset, " ", m.key, " ",
                        m.value, " ", m.headers.trace, " ", type(m.time))
            end
            local m, err = c:fetch(200)
            ngx.say(m, " ", err)
            c:close()
        }
    }
--- request
GET /t
--- response_body
true 0 0 k1 value 1 t1 number
true 0 1 k2 value 2 t2 number
true 0 2 k3 value 3 t3 number
nil timeout
--- no_error_log
[error]
--- timeout: 20



=== TEST 2: send_async from the log phase of 10k requests; a consumer reads all 10k exactly
--- http_config eval: $::HttpConfig
--- config
    keepalive_requests 100000;
    location = /log {
        return 204;
        log_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local p = kafka.producer(ASYNC)
            local ok, err = p:send_async(ngx.var.arg_topic, nil, "msg-" .. ngx.var.arg_i)
            if not ok then ngx.log(ngx.ERR, "send_async: ", err) end
        }
    }
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local topic = fresh_topic(kafka, 4)
            local n = hammer("/log?topic=" .. topic .. "&i=", 10000)
            local p = kafka.producer(ASYNC)
            local ok, err = p:flush(20000)
            ngx.say("requests ", n, ", flush ", ok, " ", err)
            local st = p:stats()
            ngx.say("buffered ", st.buffered, ", failed ", st.failed)
            local msgs, extra = read_all(kafka, topic, 10000)
            local seen, dup = {}, 0
            for _, m in ipairs(msgs) do
                if seen[m.value] then dup = dup + 1 end
                seen[m.value] = true
            end
            local missing = 0
            for i = 1, 10000 do
                if not seen["msg-" .. i] then missing = missing + 1 end
            end
            ngx.say("read ", #msgs, ", extra ", extra, ", duplicates ", dup, ", missing ", missing)
        }
    }
--- request
GET /t
--- response_body
requests 10000, flush true nil
buffered 0, failed 0
read 10000, extra 0, duplicates 0, missing 0
--- no_error_log
[error]
--- timeout: 60



=== TEST 3: keys land on the partition the balancer says (murmur2 as Java, crc32 as librdkafka / lua-resty-kafka)
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            -- reference placement for 4 partitions: Java's murmur2
            -- (toPositive(murmur2(key)) % 4) and crc32 (ngx.crc32_long % 4)
            local keys = { "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta" }
            for _, bal in ipairs{ "murmur2", "crc32" } do
                local topic = fresh_topic(kafka, 4)
                local p = assert(kafka.producer{ brokers = BROKERS, balancer = bal })
                for _, k in ipairs(keys) do assert(p:send(topic, k, k)) end
                local msgs = read_all(kafka, topic, #keys)
                local placed = {}
                for _, m in ipairs(msgs) do placed[m.key] = m.partition end
                local out = {}
                for _, k in ipairs(keys) do
                    out[#out + 1] = k .. "=" .. tostring(placed[k])
                    if bal == "crc32" and placed[k] ~= ngx.crc32_long(k) % 4 then
                        out[#out + 1] = "(crc32 says " .. ngx.crc32_long(k) % 4 .. ")"
                    end
                end
                ngx.say(bal, ": ", table.concat(out, " "))
            end
        }
    }
--- request
GET /t
--- response_body
murmur2: alpha=0 beta=0 gamma=2 delta=2 epsilon=1 zeta=1 eta=2 theta=0
crc32: alpha=2 beta=3 gamma=1 delta=1 epsilon=0 zeta=3 eta=1 theta=1
--- no_error_log
[error]
--- timeout: 30



=== TEST 4: every compression codec round-trips, sync and async
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local big = string.rep("compressible ", 100)
            for _, codec in ipairs{ "none", "gzip", "snappy", "lz4", "zstd" } do
                local topic = fresh_topic(kafka, 1)
                local p = assert(kafka.producer{ brokers = BROKERS, compression = codec,
                                                 batch_timeout = 5 })
                assert(p:send(topic, "s", big .. "sync", { codec = codec }))
                assert(p:send_async(topic, "a", big .. "async", { codec = codec }))
                assert(p:flush(5000))
                local msgs = read_all(kafka, topic, 2)
                local ok = #msgs == 2 and msgs[1].value == big .. "sync"
                           and msgs[2].value == big .. "async"
                           and msgs[2].headers.codec == codec
                ngx.say(codec, " ", ok)
            end
        }
    }
--- request
GET /t
--- response_body
none true
gzip true
snappy true
lz4 true
zstd true
--- no_error_log
[error]
--- timeout: 40



=== TEST 5: bad options and arguments give clear errors
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local function try(f, ...)
                local ok, a, b = pcall(f, ...)
                if not ok then ngx.say("raised: ", (a:gsub("^.-: ", "", 0))) return end
                ngx.say(tostring(a), " ", tostring(b))
            end
            try(kafka.producer, { brokers = BROKERS, compression = "brotli" })
            try(kafka.producer, { brokers = BROKERS, acks = "most" })
            try(kafka.producer, { brokers = BROKERS, linger = 5 })
            try(kafka.producer, { })
            try(kafka.producer, { brokers = { "no-port" } })
            try(kafka.producer, { brokers = BROKERS, sasl = { mechanism = "GSSAPI", user = "u" } })
            try(kafka.consumer, { brokers = BROKERS, topic = "x" })
            try(kafka.consumer, { brokers = BROKERS, group_id = "g" })
            local p = kafka.producer{ brokers = BROKERS }
            local ok, err = pcall(p.send_async, p, 42, nil, "v")
            ngx.say(ok, " ", err)
            ok, err = pcall(p.send, p, "t", nil, {})
            ngx.say(ok, " ", err)
            ok, err = pcall(kafka.producer, "brokers")
            ngx.say(ok, " ", err)
        }
    }
--- request
GET /t
--- response_body
nil kafka.producer: option "compression" must be one of none, gzip, snappy, lz4, zstd, got "brotli"
nil kafka.producer: option "acks" must be one of none, leader, all, got "most"
nil kafka.producer: unknown option "linger"
nil kafka.producer: option "brokers" is required (a list of "host:port")
nil kafka.producer: brokers[1]: "no-port" is not "host:port"
nil kafka.producer: sasl: option "mechanism" must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got "GSSAPI"
nil kafka.consumer: without "group_id", give one "topic" and a "partition"
nil kafka.consumer: option "topic" (or "topics") is required
false resty.ffi.kafka.send_async: argument #1 (topic) must be a string, got number
false resty.ffi.kafka.send: argument #3 (value) must be a string or nil, got table
false resty.ffi.kafka.producer: argument #1 (opts) must be a table, got string
--- no_error_log
[error]
