# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# resty.ffi.redis, lua-resty-redis surface: every reply type, binary-safe
# keys and values, error replies, argument rendering.

use lib '.';
use t::FFI;

need_backend('redis', '127.0.0.1', 16379);

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: status, bulk, nil bulk, integer, multi-bulk replies
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            red:set_timeout(1000)
            local ok, err = red:connect("127.0.0.1", 16379)
            if not ok then ngx.say("connect: ", err) return end
            red:del("t1:s", "t1:l", "t1:n")
            local res = red:set("t1:s", "hello")
            ngx.say("set: ", type(res), " ", res)
            res = red:get("t1:s")
            ngx.say("get: ", type(res), " ", res)
            res = red:get("t1:none")
            ngx.say("nil bulk: ", res == ngx.null)
            res = red:incr("t1:n")
            ngx.say("incr: ", type(res), " ", res)
            res = red:rpush("t1:l", "a", 2, 1.5)
            ngx.say("rpush: ", res)
            res = red:lrange("t1:l", 0, -1)
            ngx.say("lrange: ", type(res), " ", #res, " ", table.concat(res, ","))
            res = red:mget("t1:s", "t1:none")
            ngx.say("mget: ", res[1], " ", res[2] == ngx.null)
            res = red:lrange("t1:none", 0, -1)
            ngx.say("empty multi-bulk: ", type(res), " ", #res)
            res = red:ping()
            ngx.say("ping: ", res)
            red:del("t1:s", "t1:l", "t1:n")
            ngx.say("keepalive: ", red:set_keepalive(10000, 100))
        }
    }
--- request
GET /t
--- response_body
set: string OK
get: string hello
nil bulk: true
incr: number 1
rpush: 3
lrange: table 3 a,2,1.5
mget: hello true
empty multi-bulk: table 0
ping: PONG
keepalive: 1
--- no_error_log
[error]



=== TEST 2: error replies: false, msg for a command; {false, msg} inside arrays
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            red:set("t2:s", "x")
            local res, err = red:incr("t2:s")
            ngx.say("incr: ", tostring(res), " ", err)
            res, err = red:hget("t2:s", "f")
            ngx.say("hget: ", tostring(res), " ", err)
            res, err = red:nosuchcommand("a")
            ngx.say("unknown: ", tostring(res), " ", err)
            res = red:eval("return {1, redis.error_reply('MYERR boom'), 'x'}", 0)
            ngx.say("nested: ", res[1], " ", type(res[2]), " ", tostring(res[2][1]), " ", res[2][2], " ", res[3])
            red:del("t2:s")
        }
    }
--- request
GET /t
--- response_body
incr: false ERR value is not an integer or out of range
hget: false WRONGTYPE Operation against a key holding the wrong kind of value
unknown: false ERR unknown command 'nosuchcommand', with args beginning with: 'a' 
nested: 1 table false MYERR boom x
--- no_error_log
[error]



=== TEST 3: binary-safe keys and values
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            local bytes = {}
            for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
            local v = table.concat(bytes) .. "\r\n$-1\r\n*2\r\n"
            local k = "t3:\0\r\n\255"
            ngx.say(red:set(k, v))
            local got = red:get(k)
            ngx.say(#got, " ", got == v)
            ngx.say(red:exists(k), " ", red:exists("t3:\0"))
            local big = string.rep("x\0", 512 * 1024)
            red:set(k, big)
            ngx.say(#red:get(k) == #big)
            ngx.say(red:del(k))
        }
    }
--- request
GET /t
--- response_body
OK
267 true
1 0
true
1
--- no_error_log
[error]



=== TEST 4: argument rendering: as tostring() does, except integers up to 2^53 stay exact
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            red:del("t4")
            red:rpush("t4", 1, -2, 3.25, 1e20, 0.1, true, false, 2^53)
            ngx.say(table.concat(red:lrange("t4", 0, -1), " "))
            red:del("t4")
        }
    }
--- request
GET /t
--- response_body
1 -2 3.25 1e+20 0.1 true false 9007199254740992
--- no_error_log
[error]



=== TEST 5: hash replies, hmset with a table, array_to_hash, lazy methods
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            assert(red:connect("127.0.0.1", 16379))
            red:del("t5")
            ngx.say(red:hmset("t5", { a = "1", b = "2" }))
            ngx.say(red:hmset("t5", "c", "3", "d", 4))
            local h = red:array_to_hash(red:hgetall("t5"))
            ngx.say(h.a, h.b, h.c, h.d)
            ngx.say(red:hlen("t5"), " ", red:HLEN("t5"))
            ngx.say(rawget(redis, "hlen") ~= nil)
            red:del("t5")
        }
    }
--- request
GET /t
--- response_body
OK
OK
1234
4 4
true
--- no_error_log
[error]



=== TEST 6: unix socket, select, close then use
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            local ok, err = red:connect("unix:$TEST_NGINX_ROOT/.run/redis/redis.sock")
            ngx.say("unix connect: ", ok, " ", err)
            ngx.say(red:select(2))
            red:set("t6", "in db 2")
            ngx.say(red:select(0))
            ngx.say(red:get("t6"))
            red:select(2)
            ngx.say(red:get("t6"))
            red:del("t6")
            ngx.say(red:close())
            ngx.say(red:get("t6"))
            local res, err = red:select(99999)
            ngx.say(tostring(res), " ", err)
            assert(red:connect("127.0.0.1", 16379))
            res, err = red:select(99999)
            ngx.say(tostring(res), " ", err)
        }
    }
--- request
GET /t
--- response_body
unix connect: 1 nil
OK
OK
null
in db 2
1
nilclosed
nil closed
false ERR DB index is out of range
--- no_error_log
[error]
