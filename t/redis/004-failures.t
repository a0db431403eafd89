# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# resty.ffi.redis failures: read timeouts (BLPOP longer than the timeout),
# connection refused, a server that goes away and comes back while nginx
# keeps running, AUTH.

use lib '.';
use t::FFI;

need_backend('redis', '127.0.0.1', 16379);
need_backend('redis (restartable)', '127.0.0.1', 17004);
need_backend('redis (password)', '127.0.0.1', 16380);

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: BLPOP longer than the read timeout fails with "timeout"; the object is usable after
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            red:set_timeout(300)
            red:del("f1")
            local t0 = ngx.now()
            local res, err = red:blpop("f1", 2)
            ngx.update_time()
            local dt = ngx.now() - t0
            ngx.say(tostring(res), " ", err, " ", dt >= 0.25 and dt < 1.5)
            red:set_timeout(3000)
            res, err = red:blpop("f1", 1)
            ngx.say("blpop 1s within 3s: ", res == ngx.null)
            red:rpush("f1", "x")
            res = red:blpop("f1", 1)
            ngx.say(res[1], " ", res[2])
        }
    }
--- request
GET /t
--- response_body
nil timeout true
blpop 1s within 3s: true
f1 x
--- no_error_log
[error]



=== TEST 2: connection refused at connect(), as with a cosocket
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            red:set_timeout(1000)
            local ok, err = red:connect("127.0.0.1", 1)
            ngx.say(tostring(ok), " ", err)
            ok, err = red:get("x")
            ngx.say(tostring(ok), " ", err)
            ok, err = red:connect("127.0.0.1", 1)
            ngx.say(tostring(ok), " ", err)
        }
    }
--- request
GET /t
--- response_body
nil connection refused
nil closed
nil connection refused
--- no_error_log
[error]



=== TEST 3: the server goes away and comes back: calls fail, then recover without restarting nginx
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local function client()
                local red = redis:new()
                red:set_timeout(1000)
                local ok, err = red:connect("127.0.0.1", 17004, { max_retries = 0 })
                if not ok then return nil, err end
                return red
            end
            local red = assert(client())
            ngx.say("before: ", red:set("f3", "v"))
            -- warm the pool with a few connections
            red:init_pipeline() red:ping() red:ping() red:commit_pipeline()
            red:shutdown("nosave")   -- the server exits; ctl starts it again after 1.5 s
            ngx.sleep(0.2)
            local res, err = red:get("f3")
            ngx.say("down, command: ", tostring(res), " ", err)
            local _, cerr = client()
            ngx.say("down, connect: ", cerr)
            local recovered
            for i = 1, 50 do
                local c = client()
                if c and c:ping() == "PONG" then
                    recovered = c
                    break
                end
                ngx.sleep(0.1)
            end
            ngx.say("recovered: ", recovered ~= nil)
            ngx.say("after: ", recovered:set("f3", "again"), " ", recovered:get("f3"))
        }
    }
--- request
GET /t
--- response_body_like
before: OK
down, command: nil (closed|connection refused|connection reset by peer)
down, connect: connection refused
recovered: true
after: OK again
--- no_error_log
[error]
--- timeout: 15



=== TEST 4: AUTH: right password, wrong password, no password
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16380))
            local res, err = red:get("x")
            ngx.say("no auth: ", tostring(res), " ", err)
            res, err = red:auth("wrong")
            ngx.say("wrong: ", tostring(res), " ", err)
            res, err = red:auth("rffi-secret")
            ngx.say("right: ", res, " ", tostring(err))
            ngx.say(red:set("a1", "v"), " ", red:get("a1"), " ", red:del("a1"))
            res, err = red:auth("default", "rffi-secret")
            ngx.say("user + password: ", res)
            red:set_keepalive()
            -- a new object starts from connect() again: no credentials
            assert(red:connect("127.0.0.1", 16380))
            res, err = red:get("x")
            ngx.say("new session: ", tostring(res), " ", err)
            -- credentials given as connect() options
            red = redis:new()
            assert(red:connect("127.0.0.1", 16380, { password = "rffi-secret" }))
            ngx.say("option: ", red:ping())
        }
    }
--- request
GET /t
--- response_body
no auth: false NOAUTH Authentication required.
wrong: false WRONGPASS invalid username-password pair or user is disabled.
right: OK nil
OK v 1
user + password: OK
new session: false NOAUTH Authentication required.
option: PONG
--- no_error_log
[error]
