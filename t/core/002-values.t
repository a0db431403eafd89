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



=== TEST 10: a Records value (Go's tabular results) decodes as an array of maps, NULL, nested and empty cases included
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local codec = require "resty.ffi.codec"
            local rt = assert(rffi.open("echo"))
            local rows = assert(rt:call("records", { "id", "name", "tags" }, {
                { 1, "a", { "x", "y" } },
                { 9007199254740993LL, ngx.null, setmetatable({}, codec.array_mt) },
                { -3, "", { k = true } },
            }))
            ngx.say(#rows, " rows, array: ", getmetatable(rows) == codec.array_mt,
                    ", map rows: ", getmetatable(rows[1]) == codec.map_mt)
            for i, r in ipairs(rows) do
                local n = 0
                for _ in pairs(r) do n = n + 1 end
                local name = r.name == ngx.null and "NULL" or r.name
                ngx.say(i, ": ", tostring(r.id), " ", name, " ", n, " keys, tags ",
                        #r.tags, " ", tostring(r.tags[1] or r.tags.k))
            end
            -- rows do not share their tables: writing one leaves the next alone
            rows[1].name = "changed"
            ngx.say("row 2 name is NULL: ", rows[2].name == ngx.null)
            -- a row re-encodes as a map, a result with no rows as an empty array
            ngx.say(rt:call("echo", rows[3]).id, " ",
                    getmetatable(assert(rt:call("records", { "id" }, codec.empty_array))) == codec.array_mt)
        }
    }
--- request
GET /t
--- response_body
3 rows, array: true, map rows: true
1: 1 a 3 keys, tags 2 x
2: 9007199254740993LL NULL 3 keys, tags 0 nil
3: -3  3 keys, tags 0 true
row 2 name is NULL: true
-3 true
--- no_error_log
[error]



=== TEST 11: corrupt Records frames give an error, not a crash
--- config
    location = /t {
        content_by_lua_block {
            local codec = require "resty.ffi.codec"
            local frames = {
                -- a key that is not a string
                "\199\4\2\145\1\145\2",
                -- 3 cells for 2 keys
                "\199\8\2\146\161a\161b\147\1\2\3",
                -- cells but no keys
                "\199\3\2\144\145\1",
                -- a payload longer than its two arrays
                "\199\6\2\145\161a\145\1\192",
                -- a payload without its arrays
                "\199\1\2\1",
                -- cells claimed beyond the payload
                "\199\6\2\145\161a\221\0\0\0\9",
            }
            -- Records nested in a cell, 300 deep
            local inner = "\1"
            for _ = 1, 300 do
                local payload = "\145\161a\145" .. inner
                local n = #payload
                inner = string.char(0xc9, bit.rshift(n, 24), bit.band(bit.rshift(n, 16), 255),
                                    bit.band(bit.rshift(n, 8), 255), bit.band(n, 255), 2) .. payload
            end
            frames[#frames + 1] = inner
            for i, f in ipairs(frames) do
                local v, err = codec.decode_string(f)
                ngx.say(i, ": ", tostring(v), " ", (tostring(err):gsub(" at offset %d+", "")))
            end
            -- the same bytes, well formed, decode
            local v = assert(codec.decode_string("\199\5\2\145\161a\145\1"))
            ngx.say("good: ", #v, " ", v[1].a)
        }
    }
--- request
GET /t
--- response_body
1: nil resty.ffi: corrupt frame: records key is not a string
2: nil resty.ffi: corrupt frame: 3 records cells for 2 keys
3: nil resty.ffi: corrupt frame: 1 records cells for 0 keys
4: nil resty.ffi: corrupt frame: records payload length 6 does not match its contents
5: nil resty.ffi: corrupt frame: records payload without its keys
6: nil resty.ffi: corrupt frame: 9 records cells for 1 keys
7: nil resty.ffi: corrupt frame: nesting deeper than 200
good: 1 1
--- no_error_log
[error]
