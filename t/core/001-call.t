# vim:set ft= ts=4 sw=4 et fdm=marker:
# Waiting calls through Go: every phase that can yield, and the clear
# errors of those that cannot.
use lib '.';
use t::FFI;

repeat_each(2);
plan tests => repeat_each() * (blocks() * 3 + 2);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: call from content_by_lua returns the value
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local echo = assert(rffi.open("echo"))
            ngx.say(echo:call("echo", "hello from go"))
        }
    }
--- request
GET /t
--- response_body
hello from go
--- no_error_log
[error]



=== TEST 2: call from rewrite_by_lua and access_by_lua
--- config
    location = /t {
        rewrite_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            ngx.ctx.rewrite = echo:call("echo", "rewrite")
        }
        access_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            ngx.ctx.access = echo:call("echo", "access")
        }
        content_by_lua_block {
            ngx.say(ngx.ctx.rewrite, " ", ngx.ctx.access)
        }
    }
--- request
GET /t
--- response_body
rewrite access
--- no_error_log
[error]



=== TEST 3: call from a timer
--- config
    location = /t {
        content_by_lua_block {
            local dict = ngx.shared.results
            local ok, err = ngx.timer.at(0, function()
                local echo = assert(require("resty.ffi").open("echo"))
                dict:set("timer", echo:call("echo", "from a timer"))
            end)
            assert(ok, err)
            for _ = 1, 200 do
                if dict:get("timer") then break end
                ngx.sleep(0.01)
            end
            ngx.say(dict:get("timer"))
            dict:delete("timer")
        }
    }
--- http_config
    lua_shared_dict results 1m;
--- request
GET /t
--- response_body
from a timer
--- no_error_log
[error]



=== TEST 4: call from the log phase fails naming the phase; submit works there
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("ok")
        }
        log_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local res, err = echo:call("echo", 1)
            ngx.log(ngx.WARN, "log phase call: ", tostring(res), ", ", err)
            assert(echo:submit("record", "from-log", "delivered"))
        }
    }
    location = /check {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            for _ = 1, 100 do
                local v = echo:call("recorded", "from-log")
                if v ~= ngx.null then
                    ngx.say(v)
                    return
                end
                ngx.sleep(0.01)
            end
            ngx.say("not delivered")
        }
    }
--- pipelined_requests eval
["GET /t", "GET /check"]
--- response_body eval
["ok\n", "delivered\n"]
--- error_log
log phase call: nil, resty.ffi: cannot wait for a result in the log phase (nginx-lua cannot yield there); use :submit() to send without waiting, or ngx.timer.at() to wait in a timer



=== TEST 5: call from header_filter and body_filter fails naming the phase
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("body")
        }
        header_filter_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local res, err = echo:call("echo", 1)
            ngx.header["X-Err"] = err:match("in the (%S+ phase)")
        }
        body_filter_by_lua_block {
            if ngx.arg[2] then
                local echo = assert(require("resty.ffi").open("echo"))
                local res, err = echo:call("echo", 1)
                ngx.arg[1] = (ngx.arg[1] or "") .. err:match("in the (%S+ phase)") .. "\n"
            end
        }
    }
--- request
GET /t
--- response_body
body
body_filter phase
--- response_headers
X-Err: header_filter phase



=== TEST 6: call from set_by_lua fails naming the phase
--- config
    location = /t {
        set_by_lua_block $err {
            local echo = assert(require("resty.ffi").open("echo"))
            local res, err = echo:call("echo", 1)
            return err
        }
        content_by_lua_block {
            ngx.say(ngx.var.err)
        }
    }
--- request
GET /t
--- response_body
resty.ffi: cannot wait for a result in the set phase (nginx-lua cannot yield there); use :submit() to send without waiting, or ngx.timer.at() to wait in a timer
--- no_error_log
[error]



=== TEST 7: the library loads in init_worker_by_lua
--- http_config
    init_worker_by_lua_block {
        local rffi = require "resty.ffi"
        local ok, err = rffi.load()
        if not ok then
            ngx.log(ngx.ERR, "load in init_worker: ", err)
        end
        -- fire-and-forget works in init_worker too
        local echo = assert(rffi.open("echo", { name = "init_worker" }))
        assert(echo:submit("record", "init_worker", "ran"))
    }
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local echo = assert(rffi.open("echo", { name = "init_worker" }))
            -- a submit runs on its own goroutine: it may land just after us
            local v
            for _ = 1, 100 do
                v = echo:call("recorded", "init_worker")
                if v ~= ngx.null then break end
                ngx.sleep(0.01)
            end
            ngx.say(rffi.loaded(), " ", v)
        }
    }
--- request
GET /t
--- response_body
true ran
--- no_error_log
[error]



=== TEST 8: loading in init_by_lua is refused with a clear error
--- init_by_lua_block
    local rffi = require "resty.ffi"
    local ok, err = rffi.load()
    package.loaded.init_load_error = err
--- config
    location = /t {
        content_by_lua_block {
            ngx.say(package.loaded.init_load_error)
            -- and the worker can still load it
            local echo = assert(require("resty.ffi").open("echo"))
            ngx.say(echo:call("echo", "worker ok"))
        }
    }
--- request
GET /t
--- response_body
resty.ffi: cannot load the Go runtime in init_by_lua: it runs in the nginx master, and Go's threads do not survive fork(); load it in init_worker_by_lua or on first use
worker ok
--- no_error_log
[error]



=== TEST 9: every argument count reaches Go, by call, call_timeout and submit
Up to three arguments take a path with no vararg function (call_few); more
take call_many. Both must deliver the same values, trailing nil included.
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local args = { "a", 2, nil, { k = "v" }, 5.5, "f" }
            local function show(t)
                if t == ngx.null then
                    return "null"
                end
                local out = {}
                for i = 1, #t do
                    local v = t[i]
                    out[i] = type(v) == "table" and "{k=" .. v.k .. "}" or tostring(v)
                end
                return #t .. ":" .. table.concat(out, ",")
            end
            for n = 0, 6 do
                local all = echo:call("echo_all", unpack(args, 1, n))
                local timed = echo:call_timeout(1000, "echo_all", unpack(args, 1, n))
                assert(echo:submit("record", "n" .. n, "first", unpack(args, 1, n)))
                ngx.say(n, " ", show(all), " ", show(timed))
            end
            ngx.sleep(0.05)
            for n = 0, 6 do
                local rec = echo:call("recorded", "n" .. n)
                if type(rec) ~= "table" then
                    rec = { rec }
                end
                ngx.say("submitted ", n, " ", show(rec))
            end
        }
    }
--- request
GET /t
--- response_body
0 0: 0:
1 1:a 1:a
2 2:a,2 2:a,2
3 3:a,2,userdata: NULL 3:a,2,userdata: NULL
4 4:a,2,userdata: NULL,{k=v} 4:a,2,userdata: NULL,{k=v}
5 5:a,2,userdata: NULL,{k=v},5.5 5:a,2,userdata: NULL,{k=v},5.5
6 6:a,2,userdata: NULL,{k=v},5.5,f 6:a,2,userdata: NULL,{k=v},5.5,f
submitted 0 1:first
submitted 1 2:first,a
submitted 2 3:first,a,2
submitted 3 4:first,a,2,userdata: NULL
submitted 4 5:first,a,2,userdata: NULL,{k=v}
submitted 5 6:first,a,2,userdata: NULL,{k=v},5.5
submitted 6 7:first,a,2,userdata: NULL,{k=v},5.5,f
--- no_error_log
[error]
