# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# Nothing accepted is lost on reload: messages still buffered by send_async
# (in the Lua chunk and in Go's batches) are delivered while the old worker
# exits after a HUP.
# Needs the kfake cluster: t/servers/kafka/ctl start.

use lib '.';
use t::FFI;

need_backend('kafka', '127.0.0.1', 19092);

repeat_each(1);
master_on();
workers(1);
no_shuffle();
plan tests => repeat_each() * (blocks() * 5);

our $HttpConfig = <<'_EOC_';
    lua_shared_dict rl 1m;
    init_by_lua_block {
        BROKERS = { "127.0.0.1:19092", "127.0.0.1:19093", "127.0.0.1:19094" }
        -- long batch and linger times: the messages are still buffered when
        -- the HUP comes
        SLOW = { brokers = BROKERS, batch_timeout = 10000, batch_size = 100000,
                 async_linger = 10000, async_chunk = 300 }
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: HUP with 1000 async messages buffered: all delivered by the exiting worker
--- http_config eval: $::HttpConfig
--- config
    location = /send {
        content_by_lua_block {
            local ffi = require "ffi"
            pcall(ffi.cdef, "int kill(int pid, int sig);")
            local kafka = require "resty.ffi.kafka"
            local topic = "rl-" .. ngx.now() * 1000 .. "-" .. math.random(1e6)
            assert(kafka.create_topic({ brokers = BROKERS }, topic, 2, 1))
            ngx.shared.rl:set("topic", topic)
            local p = assert(kafka.producer(SLOW))
            for i = 1, 1000 do assert(p:send_async(topic, nil, "r" .. i)) end
            ngx.say("buffered ", p:buffered())
            local f = assert(io.open(ngx.config.prefix() .. "logs/nginx.pid"))
            local master = tonumber(f:read("*l"))
            f:close()
            ffi.C.kill(master, 1) -- SIGHUP
            ngx.say("reloading")
            -- this (old) worker stops accepting once it takes the master's
            -- QUIT; the next request goes to the new one
            ngx.sleep(1)
        }
    }
    location = /check {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local topic = ngx.shared.rl:get("topic")
            local total = 0
            local deadline = ngx.now() + 20
            while ngx.now() < deadline do
                local offs = kafka.offsets({ brokers = BROKERS }, topic)
                total = 0
                for _, o in ipairs(offs or {}) do total = total + o.last - o.first end
                if total >= 1000 then break end
                ngx.sleep(0.2)
            end
            local c = assert(kafka.consumer{ brokers = BROKERS, topic = topic, group_id = topic })
            local seen, n = {}, 0
            while n < total do
                local batch = c:fetch_batch(1000, 3000)
                if not batch then break end
                for _, m in ipairs(batch) do
                    if not seen[m.value] then seen[m.value] = true n = n + 1 end
                end
            end
            c:close()
            local missing = 0
            for i = 1, 1000 do if not seen["r" .. i] then missing = missing + 1 end end
            ngx.say("in the topic ", total, ", missing ", missing)
        }
    }
--- request eval
["GET /send", "GET /check"]
--- response_body eval
["buffered 1000\nreloading\n", "in the topic 1000, missing 0\n"]
--- no_error_log
[error]
--- timeout: 60
