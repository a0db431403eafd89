# vim:set ft= ts=4 sw=4 et fdm=marker:
# Deadlines (DEADLINE_EXCEEDED, and the server sees the cancel) and
# metadata both ways (request metadata, response headers and trailers).
use lib '.';
use t::FFI;

need_backend('grpc', '127.0.0.1', 15051);
repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a deadline exceeded returns DEADLINE_EXCEEDED and the server sees the cancel
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local id = "deadline-" .. ngx.now() .. "-" .. math.random(1e9)
            local start = ngx.now()
            local res, err, st = conn:call(t.S, "Sleep", { id = id, ms = 5000 }, { timeout = 200 })
            ngx.update_time()
            local took = ngx.now() - start
            ngx.say(res, " ", err, " ", st.name, " ", st.code, " ", took >= 0.15 and took < 1.5)
            ngx.sleep(0.1)
            local seen = assert(conn:call(t.S, "Canceled", { id = id }))
            ngx.say("server saw the cancel: ", seen.seen, ", finished: ", seen.finished or false)
        }
    }
--- request
GET /t
--- response_body_like chomp
\Anil DEADLINE_EXCEEDED: (?:context deadline exceeded|stream terminated by RST_STREAM with error code: CANCEL) DEADLINE_EXCEEDED 4 true
server saw the cancel: true, finished: false
\z
--- no_error_log
[error]



=== TEST 2: the connection's default timeout applies, a call's own timeout overrides it
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn("127.0.0.1:15051", { timeout = 150 })
            local _, err = conn:call(t.S, "Sleep", { id = "d1", ms = 1000 })
            ngx.say(err)
            local res = conn:call(t.S, "Sleep", { id = "d2", ms = 300 }, { timeout = 3000 })
            ngx.say(type(res))
            local seen = assert(conn:call(t.S, "Canceled", { id = "d2" }, { emit_defaults = true }))
            ngx.say(seen.seen, " ", seen.finished)
        }
    }
--- request
GET /t
--- response_body_like chomp
\ADEADLINE_EXCEEDED: (?:context deadline exceeded|stream terminated by RST_STREAM with error code: CANCEL)
table
false true
\z
--- no_error_log
[error]



=== TEST 3: metadata both ways: default and per-call metadata, response headers and trailers
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn("127.0.0.1:15051", { metadata = { ["x-app"] = "nginx" } })
            local res, err, st = conn:call(t.S, "EchoMetadata", {
                headers = { ["x-reply-h"] = "hv" }, trailers = { ["x-reply-t"] = "tv" },
            }, { metadata = { ["x-call"] = { "a", "b" }, ["x-bin-bin"] = "\0\1\2" },
                 want_headers = true })
            if not res then
                ngx.say(err)
                return
            end
            local r = res.received
            ngx.say(r["x-app"], " ", r["x-call"], " ", ngx.encode_base64(r["x-bin-bin"]), " ", res.authority)
            ngx.say(st.name, " ", st.headers["x-reply-h"], " ", st.trailers["x-reply-t"],
                    " ", st.headers["content-type"])
            -- without want_headers there is no third value
            local res2, err2, st2 = conn:call(t.S, "EchoMetadata", {})
            ngx.say(type(res2), " ", err2, " ", st2)
        }
    }
--- request
GET /t
--- response_body
nginx a,b AAEC 127.0.0.1:15051
OK hv tv application/grpc
table nil nil
--- no_error_log
[error]



=== TEST 4: want_headers on a failed call gives the trailers in the status
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local res, err, st = conn:call(t.S, "Fail", { code = 7, message = "no" }, { want_headers = true })
            ngx.say(res, " ", err, " ", st.name, " ", type(st.headers), " ", type(st.trailers))
        }
    }
--- request
GET /t
--- response_body
nil PERMISSION_DENIED: no PERMISSION_DENIED table table
--- no_error_log
[error]



=== TEST 5: authority option and wait_for_ready
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn("127.0.0.1:15051", { authority = "svc.example" })
            local res = assert(conn:call(t.S, "EchoMetadata", {}, { wait_for_ready = true }))
            ngx.say(res.authority)
        }
    }
--- request
GET /t
--- response_body
svc.example
--- no_error_log
[error]
