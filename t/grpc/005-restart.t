# vim:set ft= ts=4 sw=4 et fdm=marker:
# A server that goes away mid-run: calls fail with UNAVAILABLE while it
# is down, and the same connection recovers once it is back. The test
# server's Bounce method stops its 127.0.0.1:15053 listener (dropping
# every connection) and serves it again after down_ms.
use lib '.';
use t::FFI;

need_backend('grpc', '127.0.0.1', 15053);
repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: server restarted mid-run: UNAVAILABLE, then recovery on the same connection
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local admin = t.conn()
            local conn = t.conn("127.0.0.1:15053", { backoff_max_delay = 300 })
            ngx.say(conn:call(t.S, "SayHello", { name = "before" }).message)
            -- a stream open across the restart ends with UNAVAILABLE too
            local s = assert(conn:server_stream(t.S, "ServerStream", { count = 100, interval_ms = 100 }))
            assert(s:recv(2000))
            assert(admin:call(t.S, "Bounce", { down_ms = 1000 }))
            local _, serr, sst
            repeat
                local msg
                msg, serr, sst = s:recv(3000)
            until not msg
            ngx.say("stream: ", sst and sst.name or serr)
            local res, err, st = conn:call(t.S, "SayHello", { name = "down" }, { timeout = 500 })
            ngx.say("while down: ", res, " ", st and st.name, " ", conn:state())
            -- back after about a second; wait_for_ready waits for the reconnection
            res, err = conn:call(t.S, "SayHello", { name = "after" }, { timeout = 5000, wait_for_ready = true })
            ngx.say(res and res.message or err)
            ngx.say(conn:call(t.S, "SayHello", { name = "again" }).message, " ", conn:state())
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
Hello before
stream: UNAVAILABLE
while down: nil UNAVAILABLE TRANSIENT_FAILURE
Hello after
Hello again READY
--- no_error_log
[error]
