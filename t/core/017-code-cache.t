# vim:set ft= ts=4 sw=4 et fdm=marker:
# One Lua VM per worker talks to the Go runtime. With lua_code_cache off,
# nginx-lua runs every request in a Lua VM of its own: the first VM to load
# the library keeps it, and any other gets a clear error at once (before
# this, its calls hung until their timeout: completions went to the first
# VM's dispatcher).
use lib '.';
use t::FFI;

repeat_each(1);
# each of the 3 pipelined requests checks its status and its body
plan tests => repeat_each() * (blocks() * 3 + 4);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: with lua_code_cache off, the requests after the first get a clear error at once
--- http_config
    lua_code_cache off;
--- config
    location = /t {
        content_by_lua_block {
            ngx.update_time()
            local start = ngx.now()
            local echo, err = require("resty.ffi").open("echo")
            local res
            if echo then
                res, err = echo:call_timeout(3000, "echo", "hi")
            end
            ngx.update_time()
            ngx.say(res, " ", err and err:match("lua_code_cache off") or err,
                    " at once: ", ngx.now() - start < 1)
        }
    }
--- pipelined_requests eval
["GET /t", "GET /t", "GET /t"]
--- response_body eval
["hi nil at once: true\n", "nil lua_code_cache off at once: true\n", "nil lua_code_cache off at once: true\n"]
--- no_error_log
[error]
