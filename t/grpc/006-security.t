# vim:set ft= ts=4 sw=4 et fdm=marker:
# gRPC security: metadata cannot inject headers (CRLF, pseudo-headers),
# and credentials carried in metadata (an authorization header) never reach
# an error string or the error log. TLS verification by default is
# t/grpc/004-tls-reflection.t's TEST 2.
use lib '.';
use t::FFI;

need_backend('grpc', '127.0.0.1', 15051);
need_backend('grpc (tls)', '127.0.0.1', 15052);
repeat_each(1);
plan tests => repeat_each() * (blocks() * 3 + 1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: CRLF in metadata is refused with a clear error; the server never sees an injected header
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local function try(md)
                local res, err = conn:call(t.S, "EchoMetadata", {}, { metadata = md, timeout = 3000 })
                if not res then
                    return err
                end
                local keys = {}
                for k in pairs(res.received) do
                    if k:find("evil", 1, true) or k:find("\r", 1, true) then keys[#keys + 1] = k end
                end
                return "sent; injected headers: " .. #keys .. "; x-v = " .. tostring(res.received["x-v"])
            end
            ngx.say("value: ", try{ ["x-v"] = "1\r\nx-evil: 1" })
            ngx.say("value, LF only: ", try{ ["x-v"] = "1\nx-evil: 1" })
            ngx.say("key: ", try{ ["x-v\r\nx-evil"] = "1" })
            ngx.say("key with a colon: ", try{ ["x-evil: 1\r\nx-v"] = "1" })
            -- a -bin header is binary: CRLF is its data, sent base64-encoded
            local res = assert(conn:call(t.S, "EchoMetadata", {}, { metadata = { ["x-v-bin"] = "1\r\nx-evil: 1" } }))
            ngx.say("binary value: ", res.received["x-v-bin"] == "1\r\nx-evil: 1", " ", res.received["x-evil"])
            -- default metadata of the connection is checked the same way
            local c2 = t.conn("127.0.0.1:15051", { metadata = { ["x-v"] = "1\r\nx-evil: 1" } })
            ngx.say("connection metadata: ", (select(2, c2:call(t.S, "EchoMetadata", {}, { timeout = 3000 }))))
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
value: INTERNAL: header key "x-v" contains value with non-printable ASCII characters
value, LF only: INTERNAL: header key "x-v" contains value with non-printable ASCII characters
key: INTERNAL: header key "x-v\r\nx-evil" contains illegal characters not in [0-9a-z-_.]
key with a colon: INTERNAL: header key "x-evil: 1\r\nx-v" contains illegal characters not in [0-9a-z-_.]
binary value: true nil
connection metadata: INTERNAL: header key "x-v" contains value with non-printable ASCII characters
--- no_error_log
[error]



=== TEST 2: pseudo-headers and reserved headers in metadata do not override the request's own
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local res, err = conn:call(t.S, "EchoMetadata", {}, { metadata = {
                [":path"] = "/rffitest.v1.TestService/Fail", [":authority"] = "evil.example",
                ["content-type"] = "text/evil", ["te"] = "evil", ["grpc-timeout"] = "1n",
            }, timeout = 3000 })
            if not res then
                ngx.say(err)
                return
            end
            local r = res.received
            ngx.say(res.authority, " ", r["content-type"], " ", r["te"], " ", r["grpc-timeout"], " ", r[":path"])
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
127.0.0.1:15051 application/grpc nil nil nil
--- no_error_log
[error]



=== TEST 3: credentials in metadata never reach an error string or the error log
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local secret = "Bearer Gt8-grpc-" .. "SECRET-2m"
            local md = { authorization = secret, ["x-api-key"] = secret }
            local function record(name, res, err, st)
                ngx.log(ngx.ERR, "grpc case ", name, ": ", tostring(err), " ", st and st.message or "")
                local text = tostring(err) .. (st and tostring(st.message) or "")
                ngx.say(name, ": failed ", res == nil, ", shows the secret ", text:find("Gt8-grpc", 1, true) ~= nil)
            end
            local plain = t.conn("127.0.0.1:15051", { metadata = md })
            record("server error", plain:call(t.S, "Fail", { code = 16, message = "no" }, { metadata = md }))
            record("deadline", plain:call(t.S, "Sleep", { ms = 2000 }, { metadata = md, timeout = 200 }))
            record("bad header next to it", plain:call(t.S, "EchoMetadata", {},
                   { metadata = { authorization = secret .. "\r\n" }, timeout = 3000 }))
            local down = t.conn("127.0.0.1:1", { metadata = md })
            record("unreachable", down:call(t.S, "SayHello", { name = "x" }, { metadata = md, timeout = 2000 }))
            local tls = t.conn("127.0.0.1:15052", { tls = true, metadata = md })
            record("tls failure", tls:call(t.S, "SayHello", { name = "x" }, { metadata = md, timeout = 3000 }))
            local s, err = plain:server_stream(t.S, "ServerStream", { count = 1, fail_code = 7 }, { metadata = md })
            if s then
                local item
                repeat item, err = s:recv(2000) until not item
            end
            record("stream", nil, err)
            -- the server did get the credentials (so the secret was in play)
            local res = assert(plain:call(t.S, "EchoMetadata", {}, { metadata = md }))
            ngx.say("server saw it: ", res.received.authorization:find(secret, 1, true) ~= nil)
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
server error: failed true, shows the secret false
deadline: failed true, shows the secret false
bad header next to it: failed true, shows the secret false
unreachable: failed true, shows the secret false
tls failure: failed true, shows the secret false
stream: failed true, shows the secret false
server saw it: true
--- error_log
grpc case tls failure:
--- no_error_log
Gt8-grpc-SECRET-2m
