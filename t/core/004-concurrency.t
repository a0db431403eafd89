# vim:set ft= ts=4 sw=4 et fdm=marker:
# Many calls at once: each gets its own result; a full queue says "busy".
use lib '.';
use t::FFI;

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: 1000 concurrent calls from one request all return their own result
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local threads = {}
            for i = 1, 1000 do
                threads[i] = ngx.thread.spawn(function()
                    -- a short random sleep mixes the completion order
                    assert(echo:call("sleep", i % 7))
                    return echo:call("echo", { n = i, s = "v" .. i })
                end)
            end
            local bad = 0
            for i = 1, 1000 do
                local ok, res = ngx.thread.wait(threads[i])
                if not ok or res.n ~= i or res.s ~= "v" .. i then
                    bad = bad + 1
                end
            end
            ngx.say("wrong results: ", bad)
        }
    }
--- request
GET /t
--- response_body
wrong results: 0
--- timeout: 20
--- no_error_log
[error]



=== TEST 2: a full submit queue returns "busy" at once, and recovers
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ max_in_flight = 8 }
    }
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            for i = 1, 8 do
                assert(echo:submit("sleep", 300))
            end
            ngx.update_time()
            local start = ngx.now()
            local res, err = echo:call("echo", "one more")
            local ok2, err2 = echo:submit("echo", "and another")
            ngx.update_time()
            ngx.say(tostring(res), " ", err, " ", tostring(ok2), " ", err2,
                    " waited: ", ngx.now() - start < 0.05)
            ngx.sleep(0.5)
            ngx.say(echo:call("echo", "after"))
        }
    }
--- request
GET /t
--- response_body
nil busy nil busy waited: true
after
--- no_error_log
[error]



=== TEST 3: a payload above max_payload is refused before Go sees it
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ max_payload = 1024 }
    }
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local echo = assert(rffi.open("echo"))
            ngx.say(echo:call("echo", string.rep("x", 2000)))
            ngx.say(echo:call("echo", string.rep("x", 10)))
            ngx.say("submitted: ", rffi.stats().runtimes.echo.submitted)
        }
    }
--- request
GET /t
--- response_body
nilpayload too large
xxxxxxxxxx
submitted: 1
--- no_error_log
[error]



=== TEST 4: sequential calls with a long watch after each reply, a concurrent caller, and a call after the watch ended
--- http_config
    init_worker_by_lua_block {
        -- 100 ms: every next call of the loop lands while Go watches
        require("resty.ffi").configure{ pump_spin_us = 100000 }
    }
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local other = ngx.thread.spawn(function()
                local got = 0
                for i = 1, 20 do
                    if echo:call("echo", -i) == -i then got = got + 1 end
                    ngx.sleep(0.002)
                end
                return got
            end)
            local bad = 0
            for i = 1, 2000 do
                if echo:call("echo", i) ~= i then bad = bad + 1 end
            end
            local _, got = ngx.thread.wait(other)
            ngx.sleep(0.3) -- past the watch: the pump sleeps again
            ngx.say("wrong: ", bad, ", concurrent: ", got, ", after: ", echo:call("echo", "late"))
        }
    }
--- request
GET /t
--- response_body
wrong: 0, concurrent: 20, after: late
--- timeout: 20
--- no_error_log
[error]



=== TEST 5: pump_spin_us = 0 turns the watch off; calls in a loop still return their own result
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ pump_spin_us = 0 }
    }
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local bad = 0
            for i = 1, 500 do
                if echo:call("echo", i) ~= i then bad = bad + 1 end
            end
            ngx.say("wrong: ", bad)
        }
    }
--- request
GET /t
--- response_body
wrong: 0
--- no_error_log
[error]



=== TEST 6: a negative pump_spin_us is refused when the library loads
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ pump_spin_us = -1 }
    }
--- config
    location = /t {
        content_by_lua_block {
            ngx.say(require("resty.ffi").load())
        }
    }
--- request
GET /t
--- response_body
nilresty.ffi: configuration: pump_spin_us must be an integer from 0 to 1000000, got -1
--- no_error_log
[error]
