# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# resty.ffi.kafka consumer: manual commit semantics (at-least-once),
# commit_interval, fetch_batch shape, admin calls.
# Needs the kfake cluster: t/servers/kafka/ctl start.

use lib '.';
use t::FFI;

need_backend('kafka', '127.0.0.1', 19092);

repeat_each(1);
no_shuffle();
plan tests => repeat_each() * (blocks() * 3);

our $HttpConfig = <<'_EOC_';
    init_by_lua_block {
        BROKERS = { "127.0.0.1:19092", "127.0.0.1:19093", "127.0.0.1:19094" }
        function fresh_topic(kafka, parts)
            local name = "c-" .. ngx.worker.pid() .. "-" .. ngx.now() * 1000 .. "-" .. math.random(1e6)
            assert(kafka.create_topic({ brokers = BROKERS }, name, parts or 1, 1))
            return name
        end
        function fill(kafka, topic, n)
            local p = assert(kafka.producer{ brokers = BROKERS })
            for i = 1, n do assert(p:send(topic, "k" .. i, tostring(i))) end
        end
        function values(batch)
            local out = {}
            for i, m in ipairs(batch) do out[i] = m.value end
            return table.concat(out, ",")
        end
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: manual commits: what was not committed is delivered again after a restart
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local topic = fresh_topic(kafka, 1)
            fill(kafka, topic, 10)
            local opts = { brokers = BROKERS, topic = topic, group_id = topic .. "-g" }
            local c = assert(kafka.consumer(opts))
            local batch = assert(c:fetch_batch(4, 10000))
            while #batch < 4 do
                local more = assert(c:fetch_batch(4 - #batch, 5000))
                for _, m in ipairs(more) do batch[#batch + 1] = m end
            end
            ngx.say("first: ", values(batch))
            ngx.say("commit: ", c:commit(batch))          -- 1..4 committed
            local m5 = assert(c:fetch(5000))
            ngx.say("read, not committed: ", m5.value)     -- 5 read only
            c:close()

            c = assert(kafka.consumer(opts))
            local m = assert(c:fetch(10000))
            ngx.say("after restart: ", m.value, " @", m.offset)
            ngx.say("commit one: ", c:commit(m))
            c:close()

            c = assert(kafka.consumer(opts))
            m = assert(c:fetch(10000))
            ngx.say("after second restart: ", m.value)
            c:close()
        }
    }
--- request
GET /t
--- response_body
first: 1,2,3,4
commit: true
read, not committed: 5
after restart: 5 @4
commit one: true
after second restart: 6
--- no_error_log
[error]
--- timeout: 60



=== TEST 2: commit_interval > 0 commits what was fetched, in the background
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local topic = fresh_topic(kafka, 1)
            fill(kafka, topic, 6)
            local opts = { brokers = BROKERS, topic = topic, group_id = topic .. "-g",
                           commit_interval = 100 }
            local c = assert(kafka.consumer(opts))
            local got = {}
            while #got < 3 do
                local m = assert(c:fetch(10000))
                got[#got + 1] = m.value
            end
            ngx.say("read: ", table.concat(got, ","))
            ngx.sleep(0.5)
            c:close()
            c = assert(kafka.consumer(opts))
            local m = assert(c:fetch(10000))
            ngx.say("after restart: ", m.value)
            c:close()
        }
    }
--- request
GET /t
--- response_body_like
^read: 1,2,3
after restart: [4-6]
--- no_error_log
[error]
--- timeout: 60



=== TEST 3: fetch_batch returns message tables; fetch times out with "timeout"; keys and headers absent are nil
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local topic = fresh_topic(kafka, 1)
            local p = assert(kafka.producer{ brokers = BROKERS })
            assert(p:send(topic, nil, "no key"))
            assert(p:send(topic, "k", "with headers", { a = "1", b = "2" }))
            local c = assert(kafka.consumer{ brokers = BROKERS, topic = topic, partition = 0 })
            local got = {}
            while #got < 2 do
                local batch = assert(c:fetch_batch(10, 5000))
                for _, m in ipairs(batch) do got[#got + 1] = m end
            end
            for _, m in ipairs(got) do
                ngx.say(m.topic == topic, " ", m.partition, " ", m.offset, " ", tostring(m.key), " ",
                        m.value, " ", m.headers and (m.headers.a .. m.headers.b) or "nil",
                        " ", m.time > 1.7e12)
            end
            ngx.say(c:fetch_batch(10, 100))
            ngx.say(select(2, c:commit(got[1])))
            c:close()
        }
    }
--- request
GET /t
--- response_body
true 0 0 nil no key nil true
true 0 1 k with headers 12 true
niltimeout
kafka commit: this consumer has no group_id (nothing to commit to)
--- no_error_log
[error]
--- timeout: 30



=== TEST 4: admin: create_topic, list_topics, partitions, offsets, delete_topic
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local opts = { brokers = BROKERS }
            local topic = fresh_topic(kafka, 3)
            local ok, err = kafka.create_topic(opts, topic, 3, 1)
            ngx.say("again: ", ok, " ", err)
            local names = assert(kafka.list_topics(opts))
            local found = false
            for _, n in ipairs(names) do if n == topic then found = true end end
            ngx.say("listed: ", found)
            local parts = assert(kafka.partitions(opts, topic))
            ngx.say("partitions: ", #parts, " ", parts[1].id, " ", parts[3].id,
                    " ", parts[1].leader:match("^127%.0%.0%.1:1909[234]$") ~= nil)
            fill(kafka, topic, 5)
            local offs = assert(kafka.offsets(opts, topic))
            local total = 0
            for _, o in ipairs(offs) do total = total + o.last - o.first end
            ngx.say("offsets: ", #offs, " total ", total)
            ngx.say("delete: ", kafka.delete_topic(opts, topic))
        }
    }
--- request
GET /t
--- response_body_like
^again: nil kafka create_topic \S+: .*[Aa]lready [Ee]xists.*
listed: true
partitions: 3 0 2 true
offsets: 3 total 5
delete: true
--- no_error_log
[error]
--- timeout: 30
