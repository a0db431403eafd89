# vim:set ft= ts=4 sw=4 et fdm=marker:
# Values keep their exact shape through Go and back: the codec both ways.
use lib '.';
use t::FFI;

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: binary strings with NUL bytes round trip
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local s = "a\0b\255\0" .. string.rep("\0", 300) .. "z"
            local back = echo:call("echo", s)
            ngx.say(#back, " ", back == s)
        }
    }
--- request
GET /t
--- response_body
306 true
--- no_error_log
[error]



=== TEST 2: an 8 MB payload goes to Go and back
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local s = string.rep("0123456789abcdef", 512 * 1024)
            local back = assert(echo:call("echo", s))
            ngx.say(#back, " ", back == s)
            local made = assert(echo:call("payload", 8 * 1024 * 1024))
            ngx.say(#made)
        }
    }
--- request
GET /t
--- response_body
8388608 true
8388608
--- no_error_log
[error]



=== TEST 3: int64 values beyond 2^53 stay exact
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            for _, v in ipairs({ 9007199254740993LL, -9223372036854775807LL - 1,
                                 18446744073709551615ULL, 9007199254740992 }) do
                local back = echo:call("echo", v)
                ngx.say(tostring(back), " ", type(back), " ", back == v)
            end
        }
    }
--- request
GET /t
--- response_body
9007199254740993LL cdata true
-9223372036854775808LL cdata true
18446744073709551615ULL cdata true
9.007199254741e+15 number true
--- no_error_log
[error]



=== TEST 4: nil and ngx.null stay apart, at the top and inside tables
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local a, b = echo:call("echo", nil), echo:call("echo", ngx.null)
            ngx.say(tostring(a), " ", b == ngx.null)
            local t = echo:call("echo", { k = ngx.null, list = { 1, ngx.null, 3 } })
            ngx.say(t.k == ngx.null, " ", #t.list, " ", t.list[2] == ngx.null)
            local all = echo:call("echo_all", 1, nil, 3)
            ngx.say(#all, " ", all[2] == ngx.null)
        }
    }
--- request
GET /t
--- response_body
nil true
true 3 true
3 true
--- no_error_log
[error]



=== TEST 5: nested arrays and maps, numbers, booleans
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local v = { users = { { name = "ann", age = 31, admin = true },
                                  { name = "bob", age = 0.5, tags = { "x", "y" } } },
                        [7] = "seven", neg = -129, big = 4294967296 }
            local b = echo:call("echo", v)
            ngx.say(b.users[1].name, " ", b.users[1].age, " ", tostring(b.users[1].admin))
            ngx.say(b.users[2].age, " ", table.concat(b.users[2].tags, ","))
            ngx.say(b[7], " ", b.neg, " ", b.big)
        }
    }
--- request
GET /t
--- response_body
ann 31 true
0.5 x,y
seven -129 4294967296
--- no_error_log
[error]



=== TEST 6: empty tables: a map by default, an array when marked
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local echo = assert(rffi.open("echo"))
            local m = echo:call("echo", {})
            local a = echo:call("echo", rffi.empty_array)
            ngx.say(getmetatable(m) == rffi.map_mt, " ", getmetatable(a) == rffi.array_mt)
            -- and a decoded empty array goes back as an array
            local again = echo:call("echo", a)
            ngx.say(getmetatable(again) == rffi.array_mt, " ", next(again) == nil)
        }
    }
--- request
GET /t
--- response_body
true true
true true
--- no_error_log
[error]



=== TEST 7: unencodable arguments raise an error naming the argument
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local ok, err = pcall(echo.call, echo, "echo_all", 1, function() end)
            ngx.say(err)
            ok, err = pcall(echo.call, echo, "echo", { f = coroutine.create(function() end) })
            ngx.say(err)
            ok, err = pcall(echo.call, echo, 42)
            ngx.say(err)
            ok, err = pcall(echo.call_timeout, echo, "soon", "echo", 1)
            ngx.say(err)
        }
    }
--- request
GET /t
--- response_body
resty.ffi: argument #2: cannot encode a value of type function
resty.ffi: argument #1: cannot encode a value of type thread
resty.ffi: the operation name must be a string, got number
resty.ffi: the timeout must be a positive number of milliseconds, got soon
--- no_error_log
[error]



=== TEST 8: equal option tables open one runtime, whatever their key order; cdata keys encode
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local a = { name = "keys" }
            local b = {}
            b.x, b.name, b.y = 1, "keys", 2
            b.x, b.y = nil, nil
            ngx.say(rawequal(assert(rffi.open("echo", a)), assert(rffi.open("echo", b))))
            local echo = assert(rffi.open("echo"))
            local m = echo:call("echo", { [9007199254740993LL] = "big" })
            for k, v in pairs(m) do ngx.say(tostring(k), " ", v) end
        }
    }
--- request
GET /t
--- response_body
true
9007199254740993LL big
--- no_error_log
[error]



=== TEST 9: open without options and with an empty table give one runtime, either order first
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local first = assert(rffi.open("echo", {}))
            ngx.say(rawequal(first, assert(rffi.open("echo"))))
            ngx.say(rawequal(assert(rffi.open("echo")), assert(rffi.open("echo", {}))))
            ngx.say(rawequal(assert(rffi.open("echo")), assert(rffi.open("echo", { name = "other" }))))
            ngx.say(rffi.open("echo"):call("echo", "still served"))
        }
    }
--- request
GET /t
--- response_body
true
true
false
still served
--- no_error_log
[error]
