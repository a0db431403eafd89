# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# resty.ffi.redis, lua-resty-redis surface: pipelines (one call into Go
# for the whole batch) and transactions (MULTI / EXEC / DISCARD / WATCH on
# a dedicated connection).

use lib '.';
use t::FFI;

need_backend('redis', '127.0.0.1', 16379);

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a pipeline of 1 and a pipeline of 1000
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            red:del("p1")
            red:init_pipeline()
            ngx.say("queued: ", select("#", red:set("p1", 0)))
            local res, err = red:commit_pipeline()
            ngx.say(#res, " ", res[1])
            red:init_pipeline(1000)
            for i = 1, 999 do red:incr("p1") end
            red:get("p1")
            res, err = red:commit_pipeline()
            ngx.say(#res, " ", res[1], " ", res[999], " ", res[1000])
            ngx.say(red:get("p1"))
            red:del("p1")
        }
    }
--- request
GET /t
--- response_body
queued: 0
1 OK
1000 1 999 999
999
--- no_error_log
[error]



=== TEST 2: errors and nil inside a pipeline; cancel; commit without init
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            red:init_pipeline()
            red:set("p2", "x")
            red:incr("p2")
            red:get("p2:none")
            red:hmset("p2:h", { f = "v" })
            red:hget("p2:h", "f")
            red:del("p2", "p2:h")
            local res = red:commit_pipeline()
            for i, r in ipairs(res) do
                if type(r) == "table" then
                    ngx.say(i, ": ", tostring(r[1]), " ", r[2])
                else
                    ngx.say(i, ": ", r == ngx.null and "null" or r)
                end
            end
            red:init_pipeline()
            red:set("p2", "cancelled")
            red:cancel_pipeline()
            ngx.say(red:get("p2") == ngx.null)
            ngx.say(red:commit_pipeline())
            red:init_pipeline()
            ngx.say(#red:commit_pipeline())
        }
    }
--- request
GET /t
--- response_body
1: OK
2: false ERR value is not an integer or out of range
3: null
4: OK
5: v
6: 2
true
nilno pipeline
0
--- no_error_log
[error]



=== TEST 3: MULTI / EXEC, DISCARD, an error inside EXEC
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            red:del("tx1")
            ngx.say(red:multi())
            ngx.say(red:set("tx1", "a"))
            ngx.say(red:incr("tx1"))
            ngx.say(red:get("tx1"))
            local res = red:exec()
            ngx.say(#res, " ", res[1], " ", tostring(res[2][1]), " ", res[2][2], " ", res[3])
            ngx.say(red:multi())
            ngx.say(red:set("tx1", "b"))
            ngx.say(red:discard())
            ngx.say(red:get("tx1"))
            local res, err = red:exec()
            ngx.say(tostring(res), " ", err)
            red:del("tx1")
        }
    }
--- request
GET /t
--- response_body
OK
QUEUED
QUEUED
QUEUED
3 OK false ERR value is not an integer or out of range a
OK
QUEUED
OK
a
false ERR EXEC without MULTI
--- no_error_log
[error]



=== TEST 4: WATCH makes EXEC fail when another client changes the key
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            local other = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            assert(other:connect("127.0.0.1", 16379))
            red:set("tx2", 1)
            ngx.say(red:watch("tx2"))
            other:set("tx2", 2)
            red:multi()
            red:set("tx2", 3)
            local res = red:exec()
            ngx.say("aborted: ", res == ngx.null)
            ngx.say(red:watch("tx2"))
            ngx.say(red:unwatch())
            red:multi()
            red:set("tx2", 4)
            res = red:exec()
            ngx.say(res[1], " ", red:get("tx2"))
            red:del("tx2")
        }
    }
--- request
GET /t
--- response_body
OK
aborted: true
OK
OK
OK 4
--- no_error_log
[error]



=== TEST 5: set_keepalive in the middle of MULTI discards it
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            red:del("tx3")
            red:multi()
            red:set("tx3", "never")
            ngx.say(red:set_keepalive(10000, 10))
            assert(red:connect("127.0.0.1", 16379))
            ngx.say(red:get("tx3"))
            -- the pooled connections are clean: plain commands are not QUEUED
            for i = 1, 20 do
                local r = red:ping()
                if r ~= "PONG" then ngx.say("dirty connection: ", r) end
            end
            ngx.say("done")
        }
    }
--- request
GET /t
--- response_body
1
null
done
--- no_error_log
[error]



=== TEST 6: MULTI / EXEC inside a pipeline
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            red:init_pipeline()
            red:multi()
            red:set("tx4", "1")
            red:incr("tx4")
            red:exec()
            red:del("tx4")
            local res = red:commit_pipeline()
            ngx.say(res[1], " ", res[2], " ", res[3], " ", res[4][1], " ", res[4][2], " ", res[5])
        }
    }
--- request
GET /t
--- response_body
OK QUEUED QUEUED OK 2 1
--- no_error_log
[error]
