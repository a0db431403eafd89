# vim:set ft= ts=4 sw=4 et fdm=marker:
# Go log records land in nginx's error log at their level.
use lib '.';
use t::FFI;

repeat_each(1);
plan tests => repeat_each() * (blocks() * 2 + 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a Go record at each level
--- config
    location = /t {
        content_by_lua_block {
            local echo = assert(require("resty.ffi").open("echo"))
            assert(echo:call("log", ngx.ERR, "an error from go"))
            assert(echo:call("log", ngx.WARN, "a warning from go"))
            assert(echo:call("log", ngx.INFO, "some info from go"))
            ngx.sleep(0.05)
            ngx.say("logged")
        }
    }
--- request
GET /t
--- response_body
logged
--- error_log eval
[qr/\[error\] .*resty\.ffi\(go\): an error from go/,
 qr/\[warn\] .*resty\.ffi\(go\): a warning from go/,
 qr/\[info\] .*resty\.ffi\(go\): some info from go/]
