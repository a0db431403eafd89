# vim:set ft= ts=4 sw=4 et fdm=marker:
# Handles to long-lived Go objects: recv until eof, close, GC.
use lib '.';
use t::FFI;

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a stream yields its N items, then eof
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo", { name = "s1" }))
            local s = assert(echo:call("stream", 5))
            local got = {}
            while true do
                local v, err = s:recv(1000)
                if not v then
                    got[#got + 1] = err
                    break
                end
                got[#got + 1] = v
            end
            ngx.say(table.concat(got, " "))
            ngx.say(s:recv(1000))
            s:close()
        }
    }
--- request
GET /t
--- response_body
1 2 3 4 5 eof
nileof
--- no_error_log
[error]



=== TEST 2: closing a stream early cancels its Go side
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo", { name = "s2" }))
            local s = assert(echo:call("stream", 1000000))
            ngx.say(s:recv(1000), " ", s:recv(1000))
            s:close()
            ngx.say(s:recv(100))
            local st
            for _ = 1, 100 do
                st = echo:call("stats")
                if st.streams_closed == 1 then break end
                ngx.sleep(0.01)
            end
            ngx.say("open ", st.streams_open, " closed ", st.streams_closed,
                    " canceled ", st.streams_canceled)
        }
    }
--- request
GET /t
--- response_body
1 2
nilclosed
open 0 closed 1 canceled 1
--- no_error_log
[error]



=== TEST 3: a recv with a timeout returns "timeout" and the stream lives on
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo", { name = "s3" }))
            local s = assert(echo:call("stream", 2, 300))
            ngx.say(s:recv(50))
            ngx.say(s:recv(1000), " ", s:recv(1000))
            s:close()
        }
    }
--- request
GET /t
--- response_body
niltimeout
1 2
--- no_error_log
[error]



=== TEST 4: a handle dropped without close is reclaimed by the GC
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local echo = assert(rffi.open("echo", { name = "s4" }))
            local before = rffi.stats().handles
            for i = 1, 20 do
                local s = assert(echo:call("stream", 10))
                assert(s:recv(1000) == 1)
            end
            collectgarbage()
            collectgarbage()
            local st
            for _ = 1, 200 do
                st = echo:call("stats")
                if st.streams_closed == 20 then break end
                ngx.sleep(0.01)
            end
            ngx.say("closed by gc: ", st.streams_closed, ", handles back to ",
                    rffi.stats().handles == before and "before" or rffi.stats().handles)
        }
    }
--- request
GET /t
--- response_body
closed by gc: 20, handles back to before
--- no_error_log
[error]



=== TEST 5: handles travel back to Go as arguments
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local echo = assert(rffi.open("echo", { name = "s5" }))
            local s = assert(echo:call("stream", 1))
            local back = echo:call("echo", s)
            ngx.say(rffi.is_object(back), " ", rawequal(back, s))
            s:close()
        }
    }
--- request
GET /t
--- response_body
true true
--- no_error_log
[error]
