# vim:set ft= ts=4 sw=4 et fdm=marker:
# TLS (verification on by default, a wrong CA fails clearly, client
# certificates), server reflection instead of .proto files, health, and
# the other target forms (unix:, dns:///).
use lib '.';
use t::FFI;

need_backend('grpc', '127.0.0.1', 15052);
repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: TLS with the test CA, a client certificate and a server name
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn("127.0.0.1:15052", {
                ca = t.TLS .. "/ca.pem", cert = t.TLS .. "/client.pem", key = t.TLS .. "/client.key",
            })
            local res, err = conn:call(t.S, "EchoMetadata", {})
            ngx.say(res and res.peer_cert_cn or err)
            -- the certificate also names grpc.test; verification uses server_name
            local f = assert(io.open(t.TLS .. "/ca.pem"))
            local pem = f:read("*a")
            f:close()
            conn = t.conn("127.0.0.1:15052", { ca_pem = pem, server_name = "grpc.test" })
            res, err = conn:call(t.S, "SayHello", { name = "tls" })
            ngx.say(res and res.message or err)
        }
    }
--- request
GET /t
--- response_body
rffi client
Hello tls
--- no_error_log
[error]



=== TEST 2: verification is on by default: a wrong CA, no CA, a wrong name fail clearly
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local function try(opts)
                local conn = t.conn("127.0.0.1:15052", opts)
                local res, err, st = conn:call(t.S, "SayHello", { name = "x" }, { timeout = 3000 })
                ngx.say(res, " | ", st and st.name, " | ", err)
            end
            try({ ca = t.TLS .. "/other-ca.pem" })
            try({ tls = true })
            try({ ca = t.TLS .. "/ca.pem", server_name = "wrong.example" })
            local conn = t.conn("127.0.0.1:15052", { tls = true, insecure_skip_verify = true })
            ngx.say(conn:call(t.S, "SayHello", { name = "unverified" }).message)
            ngx.say(select(2, require("resty.ffi.grpc").connect("127.0.0.1:15052", { ca = "/nonexistent.pem" })))
        }
    }
--- request
GET /t
--- timeout: 15
--- response_body_like chomp
^nil \| UNAVAILABLE \| UNAVAILABLE: connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority[^\n]*"
nil \| UNAVAILABLE \| UNAVAILABLE: [^\n]*certificate signed by unknown authority[^\n]*
nil \| UNAVAILABLE \| UNAVAILABLE: [^\n]*certificate is valid for [^\n]*not wrong.example[^\n]*
Hello unverified
grpc.connect: option "ca": open /nonexistent.pem: no such file or directory$
--- no_error_log
[error]



=== TEST 3: reflection instead of .proto files
--- config
    location = /t {
        content_by_lua_block {
            local grpc = require "resty.ffi.grpc"
            -- nothing loaded in this worker: only reflection knows the service
            local conn = assert(grpc.connect("127.0.0.1:15051", { reflection = true }))
            local res, err = conn:call("rffitest.v1.TestService", "Echo", {
                f_int64 = 9007199254740993LL, f_enum = "COLOR_RED",
                w_timestamp = "2020-01-01T00:00:00Z", f_message = { name = "r" },
            })
            if not res then
                ngx.say(err)
                return
            end
            ngx.say(tostring(res.f_int64), " ", res.f_enum, " ", res.w_timestamp, " ", res.f_message.name)
            local s = assert(conn:server_stream("rffitest.v1.TestService", "ServerStream", { count = 2 }))
            ngx.say(s:recv(1000).seq, s:recv(1000).seq, select(2, s:recv(1000)))
            local plain = assert(grpc.connect("127.0.0.1:15051"))
            ngx.say(select(2, plain:call("rffitest.v1.TestService", "SayHello", {})))
            ngx.say(select(2, conn:call("rffitest.v1.Missing", "X", {})))
        }
    }
--- request
GET /t
--- response_body
9007199254740993LL COLOR_RED 2020-01-01T00:00:00Z r
12eof
grpc: unknown service "rffitest.v1.TestService" (load its .proto with grpc.load or connect with reflection = true)
grpc reflection: looking up rffitest.v1.Missing: NOT_FOUND: the server does not know it
--- no_error_log
[error]



=== TEST 4: health checks
--- config
    location = /t {
        content_by_lua_block {
            local grpc = require "resty.ffi.grpc"
            local conn = assert(grpc.connect("127.0.0.1:15051"))
            ngx.say(grpc.health(conn))
            ngx.say(grpc.health(conn, "rffitest.v1.TestService"))
            ngx.say(conn:health("rffitest.v1.Down"))
            local _, err, st = conn:health("no.such.Service")
            ngx.say(err, " ", st.code)
        }
    }
--- request
GET /t
--- response_body
SERVING
SERVING
NOT_SERVING
NOT_FOUND: unknown service 5
--- no_error_log
[error]



=== TEST 5: unix: and dns:/// targets, keepalive, sizes, service config
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn("unix:" .. t.RUN .. "/grpc.sock")
            ngx.say(conn:call(t.S, "SayHello", { name = "unix" }).message)
            conn = t.conn("dns:///localhost:15051", {
                keepalive = { time = 10000, timeout = 1000, permit_without_stream = true },
                max_recv_size = 1024, max_send_size = 1024, user_agent = "rffi-test",
                service_config = [[{"loadBalancingConfig":[{"round_robin":{}}],
                  "methodConfig":[{"name":[{"service":"rffitest.v1.TestService"}],
                  "retryPolicy":{"maxAttempts":3,"initialBackoff":"0.01s","maxBackoff":"0.1s",
                  "backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}]],
            })
            ngx.say(conn:call(t.S, "SayHello", { name = "dns" }).message)
            local _, err = conn:call(t.S, "Echo", { f_string = string.rep("x", 2000) })
            ngx.say(err)
            ngx.say(select(2, require("resty.ffi.grpc").connect("127.0.0.1:15051", { bogus = 1 })))
            ngx.say(select(2, require("resty.ffi.grpc").connect("127.0.0.1:15051", { reflection = "yes" })))
        }
    }
--- request
GET /t
--- response_body_like chomp
^Hello unix
Hello dns
RESOURCE_EXHAUSTED: trying to send message larger than max \(20\d\d vs. 1024\)
grpc.connect: unknown option "bogus"
grpc.connect: option "reflection" must be a boolean, got string "yes"$
--- no_error_log
[error]
