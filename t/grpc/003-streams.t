# vim:set ft= ts=4 sw=4 et fdm=marker:
# Server-, client- and bidi-streaming calls, 10k messages each way;
# recv timeouts, end-of-stream statuses, close.
use lib '.';
use t::FFI;

need_backend('grpc', '127.0.0.1', 15051);
repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a server stream of 10000 messages arrives in order, then eof
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local s = assert(conn:server_stream(t.S, "ServerStream", { count = 10000, payload = "p" }))
            local n, ordered = 0, true
            while true do
                local msg, err = s:recv(5000)
                if not msg then
                    ngx.say("end: ", err)
                    break
                end
                n = n + 1
                if msg.seq ~= n or msg.payload ~= "p" then ordered = false end
            end
            ngx.say(n, " ", ordered)
            ngx.say(s:recv(100))
            ngx.say(t.dump(s:trailers()))
            s:close()
        }
    }
--- request
GET /t
--- timeout: 30
--- response_body
end: eof
10000 true
nileof
{}
--- no_error_log
[error]



=== TEST 2: a client stream of 10000 messages, then close_send returns the summary
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local s = assert(conn:client_stream(t.S, "ClientStream"))
            for i = 1, 10000 do
                local ok, err = s:send({ seq = i, payload = "m" .. i })
                if not ok then
                    ngx.say("send ", i, ": ", err)
                    return
                end
            end
            local res, err = s:close_send()
            ngx.say(t.dump(res or err))
            ngx.say(s:send({ seq = 1 }))
            s:close()
        }
    }
--- request
GET /t
--- timeout: 30
--- response_body
{"count"=10000,"last_payload"="m10000","seq_sum"=50005000}
nilgrpc: send after close_send
--- no_error_log
[error]



=== TEST 3: a bidi stream: 10000 messages sent by one light thread while another receives
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local s = assert(conn:bidi_stream(t.S, "Bidi"))
            local reader = ngx.thread.spawn(function()
                local n, sum = 0, 0
                while true do
                    local msg, err = s:recv(5000)
                    if not msg then
                        return n, sum, err
                    end
                    n = n + 1
                    sum = sum + msg.seq
                end
            end)
            for i = 1, 10000 do
                assert(s:send({ seq = i }))
            end
            assert(s:close_send())
            local _, n, sum, err = ngx.thread.wait(reader)
            ngx.say(n, " ", sum, " ", err)
            s:close()
        }
    }
--- request
GET /t
--- timeout: 30
--- response_body
10000 50005000 eof
--- no_error_log
[error]



=== TEST 4: bidi ping-pong, one message at a time
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local s = assert(conn:bidi_stream(t.S, "Bidi"))
            local ok = true
            for i = 1, 1000 do
                assert(s:send({ seq = i, payload = "ping" }))
                local msg = assert(s:recv(2000))
                if msg.seq ~= i then ok = false end
            end
            ngx.say(ok)
            s:close()
            ngx.say(s:send({ seq = 1 }))
        }
    }
--- request
GET /t
--- timeout: 30
--- response_body
true
nilclosed
--- no_error_log
[error]



=== TEST 5: a recv that times out loses nothing; the stream goes on
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local s = assert(conn:server_stream(t.S, "ServerStream", { count = 3, interval_ms = 300 }))
            ngx.say(s:recv(50))
            local seqs = {}
            for _ = 1, 3 do
                seqs[#seqs + 1] = assert(s:recv(3000)).seq
            end
            ngx.say(table.concat(seqs, ","))
            ngx.say(s:recv(3000))
        }
    }
--- request
GET /t
--- timeout: 10
--- response_body
niltimeout
1,2,3
nileof
--- no_error_log
[error]



=== TEST 6: a stream that ends with an error status, and a stream deadline
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local s = assert(conn:server_stream(t.S, "ServerStream", { count = 2, fail_code = 8 }))
            for _ = 1, 3 do
                local msg, err, st = s:recv(3000)
                ngx.say(msg and msg.seq or err, " ", st and st.name or "")
            end
            s = assert(conn:server_stream(t.S, "ServerStream", { count = 10, interval_ms = 500 },
                                          { timeout = 200 }))
            local msg, err, st = s:recv(3000)
            ngx.say(msg, " ", err:match("^[A-Z_]+"), " ", st and st.name)
        }
    }
--- request
GET /t
--- timeout: 10
--- response_body
1 
2 
RESOURCE_EXHAUSTED: failed after 2 messages RESOURCE_EXHAUSTED
nil DEADLINE_EXCEEDED DEADLINE_EXCEEDED
--- no_error_log
[error]



=== TEST 7: close cancels a running stream; wrong call kinds are refused
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local s = assert(conn:server_stream(t.S, "ServerStream", { count = 1000, interval_ms = 20 }))
            ngx.say(assert(s:recv(3000)).seq)
            ngx.say(s:close())
            ngx.say(s:recv(100))
            ngx.say(select(2, conn:server_stream(t.S, "SayHello", {})))
            ngx.say(select(2, conn:client_stream(t.S, "Bidi")))
            ngx.say(select(2, conn:bidi_stream(t.S, "ServerStream")))
            local b = assert(conn:bidi_stream(t.S, "Bidi"))
            ngx.say(select(2, b:send({ seq = "x" })))
            ngx.say(pcall(b.send, b, "not a table"))
            b:close()
        }
    }
--- request
GET /t
--- timeout: 10
--- response_body
1
true
nilclosed
grpc: /rffitest.v1.TestService/SayHello is not a server_stream method: use call
grpc: /rffitest.v1.TestService/Bidi is not a client_stream method: use bidi_stream
grpc: /rffitest.v1.TestService/ServerStream is not a bidi_stream method: use server_stream
request rffitest.v1.StreamItem: field seq: int64 (integer, decimal string or int64 cdata) expected, got string "x"
falseresty.ffi.grpc.stream:send: argument #1 (msg) must be a table, got string
--- no_error_log
[error]



=== TEST 8: recv_many takes bursts of messages in one round trip
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local s = assert(conn:server_stream(t.S, "ServerStream", { count = 10000 }))
            local n, calls, ordered = 0, 0, true
            while true do
                local batch, err = s:recv_many(256, 5000)
                if not batch then
                    ngx.say("end: ", err)
                    break
                end
                calls = calls + 1
                for _, msg in ipairs(batch) do
                    n = n + 1
                    if msg.seq ~= n then ordered = false end
                end
            end
            ngx.say(n, " ", ordered, " ", calls < n)
            ngx.say(pcall(s.recv_many, s, 0))
        }
    }
--- request
GET /t
--- timeout: 30
--- response_body
end: eof
10000 true true
falseresty.ffi.grpc.stream:recv_many: argument #1 (max) must be a positive number, got 0
--- no_error_log
[error]



=== TEST 9: the server sees the cancel when a stream is closed, and when a dropped one is collected
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local function open(id)
                local s = assert(conn:server_stream(t.S, "ServerStream",
                                                   { count = 1000, interval_ms = 20, id = id }))
                assert(s:recv(3000))
                return s
            end
            local function seen(id)
                for _ = 1, 50 do
                    local r = assert(conn:call(t.S, "Canceled", { id = id }))
                    if r.seen then return true end
                    ngx.sleep(0.05)
                end
                return false
            end
            local base = "cancel-" .. ngx.now() .. "-" .. math.random(1e9)
            local s = open(base .. "-close")
            s:close()
            ngx.say("close: ", seen(base .. "-close"))
            open(base .. "-gc") -- dropped
            collectgarbage()
            collectgarbage()
            ngx.say("gc: ", seen(base .. "-gc"))
        }
    }
--- request
GET /t
--- timeout: 15
--- response_body
close: true
gc: true
--- no_error_log
[error]
