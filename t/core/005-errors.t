# vim:set ft= ts=4 sw=4 et fdm=marker:
# Failures come back as nil, err; panics never take the worker down.
use lib '.';
use t::FFI;

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3 + 1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a Go error returns nil, err; a detailed one adds a third value
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            ngx.say(echo:call("fail", "it broke"))
            local res, err, detail = echo:call("fail_detail", "x")
            ngx.say(tostring(res), " ", err, " ", detail.code, " ", detail.args[1])
        }
    }
--- request
GET /t
--- response_body
nilit broke
nil failed with detail E42 x
--- no_error_log
[error]



=== TEST 2: a Go panic becomes an error and the worker keeps serving
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            ngx.say(echo:call("panic", "kaboom"))
            ngx.say(echo:call("echo", "still here"))
        }
    }
--- request
GET /t
--- response_body
nilpanic in panic: kaboom
still here
--- error_log
resty.ffi(go): panic in panic: kaboom
--- no_error_log
[alert]



=== TEST 3: unknown runtime, unknown operation, bad options
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            ngx.say(rffi.open("no-such-runtime"))
            local echo = assert(rffi.open("echo"))
            ngx.say(echo:call("no-such-op"))
            ngx.say(rffi.open("echo", { colour = "red" }))
        }
    }
--- request
GET /t
--- response_body_like chomp
^nilunknown runtime "no-such-runtime" \(registered: \[.*echo.*\]\)
nilecho: unknown operation "no-such-op"
nilecho: unknown option "colour"$
--- no_error_log
[error]



=== TEST 4: wrong argument types raise errors that name the argument
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            ngx.say(select(2, pcall(rffi.open, 42)))
            ngx.say(select(2, pcall(rffi.open, "echo", "opts")))
            ngx.say(select(2, pcall(rffi.call, "not an object", "echo")))
            ngx.say(select(2, pcall(rffi.configure, "x")))
            ngx.say(select(2, pcall(rffi.configure, { nonsense = 1 })))
            local echo = assert(rffi.open("echo"))
            ngx.say(echo:call("sleep", "ten"))
        }
    }
--- request
GET /t
--- response_body
resty.ffi.open: argument #1 (name) must be a string, got number
resty.ffi.open: argument #2 (opts) must be a table or nil, got string
resty.ffi.call: argument #1 must be an object from resty.ffi.open() or a call, got string
resty.ffi.configure: argument #1 must be a table
resty.ffi.configure: unknown option 'nonsense'
nilecho: sleep: argument #1 must be an integer, got string
--- no_error_log
[error]



=== TEST 5: argument errors point at the caller's line, whatever the argument count
The ways in tail-call the functions that check (call_few, call_many,
submit_few, submit_many), so the error names the line that called (a call
that is not itself a tail call, or that line's frame would be gone).
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            local function try(f)
                local ok, err = pcall(f)
                ngx.say((tostring(err):gsub("^content_by_lua%(nginx%.conf:%d+%):(%d+): ", "line %1: ")))
            end
            try(function() local r = echo:call(42) return r end)
            try(function() local r = echo:call(42, 1, 2, 3, 4) return r end)
            try(function() local r = echo.call("x", "echo") return r end)
            try(function() local r = echo.call("x", "echo", 1, 2, 3, 4) return r end)
            try(function() local r = echo:call_timeout(-1, "echo") return r end)
            try(function() local r = echo:call_timeout("x", "echo", 1, 2, 3, 4) return r end)
            try(function() local r = echo:submit(false) return r end)
            try(function() local r = echo.submit(nil, "echo", 1, 2, 3, 4) return r end)
            try(function() local r = echo:call("echo", 1, 2, function() return r end) end)
            try(function() local r = echo:call("echo", 1, 2, 3, function() return r end) end)
        }
    }
--- request
GET /t
--- response_body
line 7: resty.ffi: the operation name must be a string, got number
line 8: resty.ffi: the operation name must be a string, got number
line 9: resty.ffi.call: argument #1 must be an object from resty.ffi.open() or a call, got string
line 10: resty.ffi.call: argument #1 must be an object from resty.ffi.open() or a call, got string
line 11: resty.ffi: the timeout must be a positive number of milliseconds, got -1
line 12: resty.ffi: the timeout must be a positive number of milliseconds, got x
line 13: resty.ffi: the operation name must be a string, got boolean
line 14: resty.ffi.submit: argument #1 must be an object from resty.ffi.open() or a call, got nil
resty.ffi: argument #3: cannot encode a value of type function
resty.ffi: argument #4: cannot encode a value of type function
--- no_error_log
[error]
