# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# resty.ffi.redis pub/sub: lua-resty-redis's subscribe / read_reply /
# unsubscribe, with the publisher in another request.

use lib '.';
use t::FFI;

need_backend('redis', '127.0.0.1', 16379);

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: subscribe, messages published by another request, unsubscribe
--- config
    location = /pub {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            local n = red:publish(ngx.var.arg_ch, ngx.var.arg_msg)
            ngx.say("receivers: ", n)
        }
    }
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            red:set_timeout(1000)
            assert(red:connect("127.0.0.1", 16379))
            local res, err = red:subscribe("ps:a", "ps:b")
            ngx.say("1: ", table.concat(res, " "))
            res, err = red:read_reply()
            ngx.say("2: ", table.concat(res, " "))
            ngx.say("keepalive: ", red:set_keepalive())

            local function publish(ch, msg)
                local sock = ngx.socket.tcp()
                assert(sock:connect("127.0.0.1", $TEST_NGINX_SERVER_PORT))
                sock:send("GET /pub?ch=" .. ch .. "&msg=" .. msg .. " HTTP/1.0\r\nHost: x\r\n\r\n")
                local body = sock:receive("*a")
                sock:close()
                return body:match("receivers: %d+")
            end
            ngx.say(publish("ps:a", "hello"))
            res, err = red:read_reply()
            ngx.say("3: ", table.concat(res, " "))
            ngx.say(publish("ps:b", "world"))
            res, err = red:read_reply()
            ngx.say("4: ", table.concat(res, " "))

            res, err = red:unsubscribe("ps:a")
            ngx.say("5: ", table.concat(res, " "))
            res, err = red:unsubscribe()
            ngx.say("6: ", table.concat(res, " "))
            res, err = red:read_reply()
            ngx.say("7: ", tostring(res), " ", err)
            ngx.say("keepalive: ", red:set_keepalive())
        }
    }
--- request
GET /t
--- response_body
1: subscribe ps:a 1
2: subscribe ps:b 2
keepalive: nilsubscribed state
receivers: 1
3: message ps:a hello
receivers: 1
4: message ps:b world
5: unsubscribe ps:a 1
6: unsubscribe ps:b 0
7: nil not subscribed
keepalive: 1
--- no_error_log
[error]



=== TEST 2: psubscribe; read_reply times out and the subscription lives on
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            local pub = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            assert(pub:connect("127.0.0.1", 16379))
            red:set_timeout(200)
            local res = red:psubscribe("ps2:*")
            ngx.say(table.concat(res, " "))
            local t0 = ngx.now()
            res, err = red:read_reply()
            ngx.update_time()
            local dt = ngx.now() - t0
            ngx.say(tostring(res), " ", err, " ", dt >= 0.15 and dt < 1)
            pub:publish("ps2:x", "late")
            res = red:read_reply()
            ngx.say(table.concat(res, " "))
            res = red:punsubscribe()
            ngx.say(table.concat(res, " "))
            ngx.say(red:close())
        }
    }
--- request
GET /t
--- response_body
psubscribe ps2:* 1
nil timeout true
pmessage ps2:* ps2:x late
punsubscribe ps2:* 0
1
--- no_error_log
[error]



=== TEST 3: binary payloads; subscriptions end with close()
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            local pub = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            assert(pub:connect("127.0.0.1", 16379))
            red:subscribe("ps3")
            local payload = "a\0b\r\n*1\r\n\255"
            pub:publish("ps3", payload)
            local res = red:read_reply()
            ngx.say(res[1], " ", res[3] == payload)
            red:close()
            ngx.sleep(0.1)
            ngx.say("receivers after close: ", pub:publish("ps3", "x"))
        }
    }
--- request
GET /t
--- response_body
message true
receivers after close: 0
--- no_error_log
[error]
