# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# The key/value example (examples/locations/kv.conf, examples/lua/examples/kv.lua)
# against the real backends, 2 workers as `make run` has them: a message
# produced to Kafka reaches the shared dict through the consumer group, and a
# Postgres NOTIFY naming a key removes it through the LISTEN loop. Each nginx
# start gets its own topic, group and channel, so a `make run` nginx (or a
# rerun) cannot take this one's messages.

use lib '.';
use t::FFI;

need_backend('kafka', '127.0.0.1', 19092);
need_backend('postgres', '127.0.0.1', 15432);

repeat_each(1);
master_on();
workers(2);
no_shuffle();
plan tests => repeat_each() * (blocks() * 3);

our $HttpConfig = <<'_EOC_';
    lua_shared_dict cache 1m;
    init_by_lua_block {
        package.path = "$TEST_NGINX_ROOT/examples/lua/?.lua;" .. package.path
        -- set in the master, inherited by both workers
        local conf = require("examples.kv").conf
        local id = ngx.time() .. "_" .. ngx.worker.pid() .. "_" .. math.random(1e6)
        conf.topic = "examples-kv-" .. id
        conf.group_id = conf.topic
        conf.channel = "examples_kv_" .. id
    }
    init_worker_by_lua_block {
        assert(require("resty.ffi").load())
        require("examples.kv").start()
    }
_EOC_

# /t drives the example's locations and prints what each answered, with the
# per-run names and the timings masked.
our $Driver = <<'_EOC_';
    include $TEST_NGINX_ROOT/examples/locations/kv.conf;
    location = /t {
        content_by_lua_block {
            local conf = require("examples.kv").conf
            local function mask(s, name, as)
                local i, j = s:find(name, 1, true)
                return i and s:sub(1, i - 1) .. as .. s:sub(j + 1) or s
            end
            for step in ngx.unescape_uri(ngx.var.arg_steps):gmatch("[^,]+") do
                local res = ngx.location.capture("/kv/" .. step:gsub(":", "?", 1))
                local body = mask(mask(res.body, conf.topic, "TOPIC"), conf.channel, "CHANNEL")
                ngx.print(res.status, " ", (body:gsub("%d+ ms", "N ms")))
            end
        }
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: a message produced to the topic is stored in the shared dict by the consumer
--- http_config eval: $::HttpConfig
--- config eval: $::Driver
--- request
GET /t?steps=get:key=fruit,put:key=fruit%26value=apple,get:key=fruit,put:key=fruit%26value=pear,get:key=fruit
--- response_body
404 fruit: not in the dict
200 sent fruit=apple to Kafka topic TOPIC; the consumer stored it in the dict after N ms
200 fruit = apple
200 sent fruit=pear to Kafka topic TOPIC; the consumer stored it in the dict after N ms
200 fruit = pear
--- no_error_log
[error]
--- timeout: 40



=== TEST 2: a NOTIFY naming a key removes that key from the dict, and only that key
--- http_config eval: $::HttpConfig
--- config eval: $::Driver
--- request
GET /t?steps=put:key=a%26value=1,put:key=b%26value=2,invalidate:key=a,get:key=a,get:key=b
--- response_body
200 sent a=1 to Kafka topic TOPIC; the consumer stored it in the dict after N ms
200 sent b=2 to Kafka topic TOPIC; the consumer stored it in the dict after N ms
200 NOTIFY CHANNEL 'a' sent; the LISTEN loop removed it from the dict after N ms
404 a: not in the dict
200 b = 2
--- no_error_log
[error]
--- timeout: 40



=== TEST 3: a message fetched again after a rebalance does not bring back what a later one or a NOTIFY changed
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kv = require "examples.kv"
            local dict = ngx.shared.cache
            local function show(what)
                ngx.say(what, ": k = ", tostring(dict:get("replay-k")))
            end
            local first = {
                { topic = "replay", partition = 0, offset = 7, key = "replay-k", value = "old" },
                { topic = "replay", partition = 1, offset = 3, key = "other", value = "x" },
            }
            kv.store_batch(dict, first)
            show("stored")
            dict:delete("replay-k")            -- what the LISTEN loop does on a NOTIFY
            kv.store_batch(dict, first)        -- the same batch again (its commit was lost)
            show("after NOTIFY and the replay")
            kv.store_batch(dict, { { topic = "replay", partition = 0, offset = 8, key = "replay-k", value = "new" } })
            show("a later message")
            kv.store_batch(dict, first)
            show("the old batch once more")
            -- another partition keeps its own mark: offset 5 < 7 there is new
            kv.store_batch(dict, { { topic = "replay", partition = 1, offset = 5, key = "replay-k", value = "p1" } })
            show("partition 1, offset 5")
        }
    }
--- request
GET /t
--- response_body
stored: k = old
after NOTIFY and the replay: k = nil
a later message: k = new
the old batch once more: k = new
partition 1, offset 5: k = p1
--- no_error_log
[error]
