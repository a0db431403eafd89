# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# resty.ffi.redis native surface: redis.new(opts), cli:command / cli["do"],
# commands as methods (errors as nil, err), pipeline(fn), transaction(fn),
# subscribe(channels) -> handle with recv(timeout) / close().

use lib '.';
use t::FFI;

need_backend('redis', '127.0.0.1', 16379);

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: commands, command(), do, error replies as nil, err
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local cli = assert(redis.new{ addr = "127.0.0.1:16379", timeout = 1000 })
            ngx.say(cli:set("n1", "v"), " ", cli:get("n1"), " ", cli:get("n1:none") == ngx.null)
            ngx.say(cli:command("strlen", "n1"), " ", cli["do"](cli, "append", "n1", "w"))
            local res, err = cli:incr("n1")
            ngx.say(tostring(res), " ", err)
            res, err = cli:command("nosuch")
            ngx.say(tostring(res), " ", err)
            ngx.say(cli:del("n1"))
            -- the same options give the same Go client (one pool per configuration)
            local again = redis.new{ addr = "127.0.0.1:16379", timeout = 1000 }
            ngx.say(again._rt == cli._rt)
        }
    }
--- request
GET /t
--- response_body
OK v true
1 2
nil ERR value is not an integer or out of range
nil ERR unknown command 'nosuch', with args beginning with: 
1
true
--- no_error_log
[error]



=== TEST 2: pipeline(fn) and transaction(fn)
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local cli = assert(redis.new{ addr = "127.0.0.1:16379" })
            local res, err = cli:pipeline(function(p)
                p:set("n2", "1")
                p:incr("n2")
                p:command("hget", "n2", "f")
                p:get("n2:none")
            end)
            ngx.say(res[1], " ", res[2], " ", tostring(res[3][1]), " ", res[4] == ngx.null)
            res, err = cli:transaction(function(t)
                t:incr("n2")
                t:get("n2")
            end)
            ngx.say(res[1], " ", res[2])
            res, err = cli:transaction(function(t)
                t:set("n2")
            end)
            ngx.say(tostring(res), " ", err)
            ngx.say(#cli:pipeline(function() end))
            cli:del("n2")
        }
    }
--- request
GET /t
--- response_body
OK 2 false true
3 3
nil EXECABORT Transaction discarded because of previous errors.
0
--- no_error_log
[error]



=== TEST 3: subscribe(channels) handle: recv with a timeout, close
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local cli = assert(redis.new{ addr = "127.0.0.1:16379" })
            local sub = assert(cli:subscribe({ "n3:a", "n3:b" }))
            local msg, err = sub:recv(100)
            ngx.say(tostring(msg), " ", err)
            ngx.say("receivers: ", cli:publish("n3:b", "hello"))
            msg, err = sub:recv(1000)
            if not msg then ngx.say("recv: ", err) return end
            ngx.say(msg.channel, " ", msg.payload, " ", tostring(msg.pattern))
            local psub = assert(cli:psubscribe("n3:*"))
            cli:publish("n3:a", "x")
            msg = psub:recv(1000)
            ngx.say(msg.pattern, " ", msg.channel, " ", msg.payload)
            msg = sub:recv(1000)
            ngx.say(msg.channel, " ", msg.payload)
            sub:close()
            psub:close()
            ngx.sleep(0.1)
            ngx.say(cli:publish("n3:a", "y"))
            ngx.say(select(2, sub:recv(10)))
        }
    }
--- request
GET /t
--- response_body
nil timeout
receivers: 1
n3:b hello nil
n3:* n3:a x
n3:a x
0
closed
--- no_error_log
[error]



=== TEST 4: wrong options and arguments
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local cli, err = redis.new{ nope = 1 }
            ngx.say(tostring(cli), " ", err:match("^redis: option \"nope\": unknown option"))
            cli, err = redis.new{ mode = "sentinel" }
            ngx.say(tostring(cli), " ", err)
            ngx.say(pcall(redis.new, { timeout = -1 }))
            cli = redis.new{ addr = "127.0.0.1:16379" }
            local res
            res, err = cli:get({})
            ngx.say(tostring(res), " ", err)
            local ok, err = pcall(cli.pipeline, cli, "x")
            ngx.say(ok, " ", err:match("bad argument.*"))
        }
    }
--- request
GET /t
--- response_body
nil redis: option "nope": unknown option
nil redis: option "master_name": sentinel mode needs the master name
falsebad option 'timeout' to 'resty.ffi.redis.new': a non-negative number of milliseconds expected, got -1
nil redis: get: argument #1: must be a string or a number, got a table
false bad argument #1 (fn) to 'pipeline': a function expected, got string
--- no_error_log
[error]



=== TEST 5: commands in a loop wait for their answers spinning (stats().read_spins), concurrent commands do not
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local redis = require "resty.ffi.redis"
            local cli = assert(redis.new{ addr = "127.0.0.1:16379", timeout = 1000 })
            assert(cli:del("n5:empty"))
            -- a BLPOP that times out after 10 ms: its reply is never there
            -- at the first read, so each call spins once, then sleeps
            local before = rffi.stats().read_spins
            for _ = 1, 20 do assert(cli:blpop("n5:empty", 0.01) == ngx.null) end
            ngx.say("20 BLPOPs in a loop: read_spins +", rffi.stats().read_spins - before)
            assert(cli:set("n5", "v"))
            before = rffi.stats().read_spins
            local threads = {}
            for i = 1, 200 do
                threads[i] = ngx.thread.spawn(function() return cli:get("n5") end)
            end
            for i = 1, 200 do assert(select(2, ngx.thread.wait(threads[i])) == "v") end
            local concurrent = rffi.stats().read_spins - before
            ngx.say("200 concurrent GETs: spun at most 5 times: ", concurrent <= 5, " (", concurrent, ")")
        }
    }
--- request
GET /t
--- response_body_like chomp
^20 BLPOPs in a loop: read_spins \+20
200 concurrent GETs: spun at most 5 times: true \(\d\)$
--- no_error_log
[error]



=== TEST 6: pump_spin_us = 0: no read spins
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ pump_spin_us = 0 }
    }
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local cli = assert(require("resty.ffi.redis").new{ addr = "127.0.0.1:16379", timeout = 1000 })
            assert(cli:set("n6", "v"))
            for _ = 1, 100 do assert(cli:get("n6") == "v") end
            ngx.say("read_spins: ", rffi.stats().read_spins)
        }
    }
--- request
GET /t
--- response_body
read_spins: 0
--- no_error_log
[error]
