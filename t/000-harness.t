# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# Self-test of the test harness (t/FFI.pm + the runner): plain nginx + Lua,
# no Go library needed.  Runs unchanged under the real Test::Nginx.

use lib '.';
use t::FFI;

repeat_each(2);

# per repetition: 2 checks per block (status + body or error log) plus the
# extra checks counted below; shutdown_error_log is checked once per block.
plan tests => repeat_each() * (blocks() * 2 + 20) + 1;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: content_by_lua_block, response_body
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("hello, world")
        }
    }
--- request
GET /t
--- response_body
hello, world
--- no_error_log
[error]



=== TEST 2: response_body_like and response_body_unlike
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("the answer is ", 6 * 7)
        }
    }
--- request
GET /t
--- response_body_like: ^the answer is \d+$
--- response_body_unlike: 41



=== TEST 3: error_code 404 from the root location
--- config
    location = /t {
        return 200;
    }
--- request
GET /no-such-file
--- error_code: 404
--- response_body_like: 404 Not Found



=== TEST 4: error_code 500 and error_log
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.ERR, "boom from the handler")
            ngx.exit(500)
        }
    }
--- request
GET /t
--- error_code: 500
--- error_log
boom from the handler



=== TEST 5: more_headers echoed back, response_headers (incl. absent header)
--- config
    location = /t {
        content_by_lua_block {
            ngx.header["X-Echo"] = ngx.var.http_x_foo
            ngx.header["X-Count"] = 3
            ngx.say(ngx.var.http_x_foo, " ", ngx.var.http_x_bar)
        }
    }
--- request
GET /t
--- more_headers
X-Foo: foo-value
X-Bar: bar
--- response_headers
X-Echo: foo-value
!X-Missing
--- response_headers_like
X-Count: \d+
--- response_body
foo-value bar



=== TEST 6: error_log with eval (list of string and qr//), no_error_log
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.WARN, "warn message #", 42)
            ngx.log(ngx.INFO, "info message")
            ngx.say("ok")
        }
    }
--- request
GET /t
--- response_body
ok
--- error_log eval
["info message", qr/\[warn\] .*warn message #\d+/]
--- no_error_log
[error]
[alert]



=== TEST 7: init_worker_by_lua_block in http_config
--- http_config
    init_worker_by_lua_block {
        package.loaded.harness_state = { pid = ngx.worker.pid(), greeting = "from init_worker" }
    }
--- config
    location = /t {
        content_by_lua_block {
            local st = package.loaded.harness_state
            ngx.say(st.greeting, " ", st.pid == ngx.worker.pid())
        }
    }
--- request
GET /t
--- response_body
from init_worker true
--- no_error_log
[error]



=== TEST 8: pipelined_requests
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("args: ", ngx.var.args)
        }
    }
--- pipelined_requests eval
["GET /t?a=1", "GET /t?b=2", "GET /t?c=3"]
--- response_body eval
["args: a=1\n", "args: b=2\n", "args: c=3\n"]



=== TEST 9: --- timeout covers a slow handler, --- wait for a late log line
--- config
    location = /t {
        content_by_lua_block {
            ngx.sleep(0.3)
            ngx.say("slow ok")
            ngx.timer.at(0.2, function()
                ngx.log(ngx.WARN, "late timer fired")
            end)
        }
    }
--- request
GET /t
--- timeout: 3
--- wait: 0.5
--- response_body
slow ok
--- error_log
late timer fired



=== TEST 10: POST body, config eval, response_body chomp
--- config eval
"location = /echo {
    content_by_lua_block {
        ngx.req.read_body()
        ngx.print(ngx.req.get_method(), ':', ngx.req.get_body_data())
    }
}"
--- request
POST /echo
hello body
--- response_body chomp
POST:hello body



=== TEST 11: request eval with several requests
--- config
    location /r {
        content_by_lua_block {
            ngx.say(ngx.var.uri)
        }
    }
--- request eval
["GET /r/one", "GET /r/two"]
--- response_body eval
["/r/one\n", "/r/two\n"]
--- no_error_log
[error]



=== TEST 12: grep_error_log and grep_error_log_out
--- config
    location = /t {
        content_by_lua_block {
            for i = 1, 3 do
                ngx.log(ngx.WARN, "grep-me item ", i)
            end
            ngx.say("done")
        }
    }
--- request
GET /t
--- response_body
done
--- grep_error_log eval: qr/grep-me item \d/
--- grep_error_log_out
grep-me item 1
grep-me item 2
grep-me item 3



=== TEST 13: preamble: lua_package_path and $TEST_NGINX_ROOT
--- config
    location = /t {
        content_by_lua_block {
            local root = "$TEST_NGINX_ROOT"
            local found = package.path:find(root .. "/lua/?.lua", 1, true) ~= nil
            local cfound = package.cpath:find(root .. "/build/?.so", 1, true) ~= nil
            ngx.say(found, " ", cfound, " ", require("resty.core") ~= nil)
        }
    }
--- request
GET /t
--- response_body
true true true
--- no_error_log
[error]



=== TEST 14: main_config, abort + ignore_response
--- main_config
    env HARNESS_MAIN_CONFIG=main-config-ok;
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.WARN, "env: ", os.getenv("HARNESS_MAIN_CONFIG"))
            ngx.sleep(0.5)
            ngx.say("too late")
        }
    }
--- request
GET /t
--- timeout: 0.2
--- abort
--- ignore_response
--- error_log
env: main-config-ok
--- no_error_log
[error]



=== TEST 15: shutdown_error_log is checked once nginx is stopped
--- config
    location = /t {
        return 200 "bye\n";
    }
--- request
GET /t
--- response_body
bye
--- shutdown_error_log
exit
