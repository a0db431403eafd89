# vim:set ft= ts=4 sw=4 et fdm=marker:
# LuaJIT's sampling profiler in a worker running Go: its SIGPROF must never
# reach LuaJIT's handler on a Go thread (core/sigprof.c).
use lib '.';
use t::FFI;

repeat_each(1);
plan tests => repeat_each() * (blocks() * 4);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: jit.profile sampling every millisecond while Go is busy keeps the worker alive and samples Lua
--- config
    location = /t {
        content_by_lua_block {
            local profile = require "jit.profile"
            local echo = assert(require("resty.ffi").open("echo"))
            local samples = 0
            profile.start("i1", function(thread, n) samples = samples + n end)
            ngx.update_time()
            local stop_at = ngx.now() + 1.5
            local threads, calls = {}, 0
            for t = 1, 20 do
                threads[t] = ngx.thread.spawn(function()
                    while ngx.now() < stop_at do
                        -- Go does the work: a 64 KiB payload per call
                        assert(#echo:call("payload", 65536) == 65536)
                        calls = calls + 1
                        ngx.update_time()
                    end
                end)
            end
            for t = 1, 20 do
                assert(ngx.thread.wait(threads[t]))
            end
            profile.stop()
            ngx.say("calls made: ", calls > 100)
            ngx.say("Lua samples taken: ", samples > 0)
        }
    }
--- request
GET /t
--- response_body
calls made: true
Lua samples taken: true
--- timeout: 20
--- no_error_log
[error]
[alert]



=== TEST 2: jit.p, started and stopped twice, reports where Lua spent its time
--- config
    location = /t {
        content_by_lua_block {
            local p = require "jit.p"
            local echo = assert(require("resty.ffi").open("echo"))
            local out = ngx.config.prefix() .. "/logs/jitp.txt"
            for round = 1, 2 do
                p.start("vi1", out)
                ngx.update_time()
                local stop_at = ngx.now() + 0.5
                local threads = {}
                for t = 1, 10 do
                    threads[t] = ngx.thread.spawn(function()
                        while ngx.now() < stop_at do
                            assert(echo:call("payload", 65536))
                            ngx.update_time()
                        end
                    end)
                end
                for t = 1, 10 do
                    assert(ngx.thread.wait(threads[t]))
                end
                p.stop()
            end
            local f = assert(io.open(out))
            local report = f:read("*a")
            f:close()
            ngx.say("report names a VM state: ", report:find("%d+%%%s+%a") ~= nil)
        }
    }
--- request
GET /t
--- response_body
report names a VM state: true
--- timeout: 20
--- no_error_log
[error]
[alert]
