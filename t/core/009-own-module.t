# vim:set ft= ts=4 sw=4 et fdm=marker:
# The README's "write your own Go module" example, built into the library.
use lib '.';
use t::FFI;

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
run_tests();

__DATA__

=== TEST 1: the hello runtime from examples/hello answers
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local hello = assert(rffi.open("hello", { greeting = "bonjour" }))
            ngx.say(hello:call("greet", "nginx"))
            ngx.say(hello:call("count"))
            ngx.say(hello:call_timeout(20, "wait", 1000))
            ngx.say(rffi.open("hello", { greeting = 1 }))
        }
    }
--- request
GET /t
--- response_body
bonjour, nginx
2
niltimeout
nilhello: option greeting must be a string, got int64
--- no_error_log
[error]
