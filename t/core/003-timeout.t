# vim:set ft= ts=4 sw=4 et fdm=marker:
# Timeouts cancel the Go side; late results are freed, never leaked.
use lib '.';
use t::FFI;

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a call past its timeout returns "timeout" and cancels the Go context
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local echo = assert(rffi.open("echo", { name = "timeout" }))
            ngx.update_time() -- opening loaded the library: the cached time is stale
            local start = ngx.now()
            local res, err = echo:call_timeout(50, "sleep", 500)
            ngx.update_time()
            local took = ngx.now() - start
            ngx.say(tostring(res), " ", err, " ", took < 0.4)
            -- the Go side saw the cancel
            local st
            for _ = 1, 100 do
                st = echo:call("stats")
                if st.sleeps_canceled == 1 then break end
                ngx.sleep(0.01)
            end
            ngx.say("sleeps canceled: ", st.sleeps_canceled)
            -- the late result came back and was freed; nothing in flight
            local s
            for _ = 1, 100 do
                s = rffi.stats()
                if s.in_flight == 0 and s.buffers_allocated == s.buffers_freed then break end
                ngx.sleep(0.01)
            end
            ngx.say("in flight: ", s.in_flight, ", allocated == freed: ",
                    s.buffers_allocated == s.buffers_freed,
                    ", canceled: ", s.runtimes.echo.canceled)
        }
    }
--- request
GET /t
--- response_body
nil timeout true
sleeps canceled: 1
in flight: 0, allocated == freed: true, canceled: 1
--- no_error_log
[error]



=== TEST 2: a call that finishes within its timeout is unaffected
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            ngx.say(echo:call_timeout(1000, "sleep", 20))
        }
    }
--- request
GET /t
--- response_body
slept
--- no_error_log
[error]



=== TEST 3: the default timeout comes from configure{ call_timeout = ms }
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            rffi.configure{ call_timeout = 30 }
            local echo = assert(rffi.open("echo"))
            ngx.say(echo:call("sleep", 300))
            rffi.configure{ call_timeout = 60000 }
        }
    }
--- request
GET /t
--- response_body
niltimeout
--- no_error_log
[error]
