# vim:set ft= ts=4 sw=4 et fdm=marker:
# Unary calls through resty.ffi.grpc against the project's test server
# (t/servers/grpc): loading protos, every field kind round tripping
# exactly, the other accepted input forms, output options, and the errors
# of bad requests (nothing sent) and of failed calls (status codes).
use lib '.';
use t::FFI;

need_backend('grpc', '127.0.0.1', 15051);
repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: load the test proto from an import path and call SayHello
--- config
    location = /t {
        content_by_lua_block {
            local grpc = require "resty.ffi.grpc"
            local services = assert(grpc.load("rffitest/v1/test.proto",
                                              { "$TEST_NGINX_ROOT/t/servers/grpc/proto" }))
            ngx.say(table.concat(services, ","))
            -- cached: the same load returns the same list
            ngx.say(grpc.load("rffitest/v1/test.proto", { "$TEST_NGINX_ROOT/t/servers/grpc/proto" }) == services)
            local conn = assert(grpc.connect("127.0.0.1:15051"))
            local res, err = conn:call("rffitest.v1.TestService", "SayHello", { name = "nginx" })
            ngx.say(res and res.message or err)
            ngx.say(grpc.connect("127.0.0.1:15051") == conn)
        }
    }
--- request
GET /t
--- response_body
rffitest.v1.TestService
true
Hello nginx
true
--- no_error_log
[error]



=== TEST 2: every field kind round trips exactly
--- config
    location = /t {
        content_by_lua_block {
            local ffi = require "ffi"
            local t = require "t_grpc"
            local conn = t.conn()
            local req = {
                f_double = 3.141592653589793, f_float = 0.1, f_int32 = -2147483648,
                f_int64 = -9223372036854775807LL - 1,
                f_uint32 = 4294967295, f_uint64 = 18446744073709551615ULL,
                f_sint32 = -5, f_sint64 = 9007199254740993LL,
                f_fixed32 = 7, f_fixed64 = 9007199254740992, f_sfixed32 = -9,
                f_sfixed64 = -9007199254740993LL, f_bool = true, f_string = "héllo\n",
                f_bytes = "\0\1\255binary\0", f_enum = "COLOR_BLUE",
                f_message = { name = "outer", value = 1, color = "COLOR_RED",
                              children = { { name = "kid", value = -1 }, { value = 2 } } },
                r_int32 = { 1, -2, 3 }, r_int64 = { 1, 9007199254740993LL, -9007199254740993LL },
                r_uint64 = { 0, 18446744073709551615ULL }, r_double = { 0.5, -1e300 },
                r_bool = { true, false, true }, r_string = { "a", "", "c" },
                r_bytes = { "\0", "\255" }, r_enum = { "COLOR_RED", "COLOR_GREEN" },
                r_message = { { name = "m1" }, { value = 5 } },
                m_string = { a = "1", ["b c"] = "2" },
                m_message = { [7] = { name = "seven" }, [-1] = { value = 3 } },
                m_int64 = { ["9007199254740993"] = -9007199254740993LL, [1] = 2 },
                m_uint64 = { ["18446744073709551615"] = "max", [3] = "three" },
                m_bool = { [true] = "\1", [false] = "\0" },
                m_enum = { x = "COLOR_GREEN" },
                c_message = { name = "oneof" },
                o_int32 = 0, o_string = "",
                w_timestamp = "2024-02-29T23:59:59.123456789Z", w_duration = "-3.000000001s",
                w_struct = { s = "x", n = 1.5, b = false, z = ngx.null, l = { 1, "two" }, o = { k = "v" } },
                w_value = { "list", "in", "value" }, w_list = { 1, ngx.null, true },
                w_int64 = 9007199254740993LL, w_uint64 = 18446744073709551615ULL,
                w_int32 = 0, w_uint32 = 4294967295, w_double = 0.25, w_float = 1.5,
                w_bool = false, w_string = "", w_bytes = "\0\0",
                w_any = { ["@type"] = "type.googleapis.com/rffitest.v1.Inner", name = "packed",
                          children = { { value = 9 } } },
                w_empty = {},
            }
            local res, err = conn:call(t.S, "Echo", req)
            if not res then
                ngx.say("error: ", err)
                return
            end
            local a, b = t.dump(req), t.dump(res)
            ngx.say(a == b and "same" or ("sent: " .. a .. "\ngot:  " .. b))
            ngx.say(type(res.f_sint64), " ", tostring(res.f_sint64), " ", type(res.f_fixed64))
        }
    }
--- request
GET /t
--- response_body
same
cdata 9007199254740993LL number
--- no_error_log
[error]



=== TEST 3: other input forms: JSON names, int64 strings, enum numbers, time numbers, Any of a well-known type
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local res, err = conn:call(t.S, "Echo", {
                fInt64 = "-12345678901234567", fUint64 = "18446744073709551615",
                fEnum = 2, rEnum = { 1, "COLOR_BLUE", 7 }, fBool = true,
                wTimestamp = 1700000000.5, wDuration = 90,
                wAny = { ["@type"] = "type.googleapis.com/google.protobuf.Duration", value = "1.5s" },
                cInt64 = "42", wInt64 = "-1",
            })
            if not res then
                ngx.say("error: ", err)
                return
            end
            ngx.say(t.dump(res))
        }
    }
--- request
GET /t
--- response_body
{"c_int64"=42,"f_bool"=true,"f_enum"="COLOR_GREEN","f_int64"=-12345678901234567LL,"f_uint64"=18446744073709551615ULL,"r_enum"={1="COLOR_RED",2="COLOR_BLUE",3=7},"w_any"={"@type"="type.googleapis.com/google.protobuf.Duration","value"="1.500s"},"w_duration"="90s","w_int64"=-1,"w_timestamp"="2023-11-14T22:13:20.500Z"}
--- no_error_log
[error]



=== TEST 4: output options: emit_defaults, int64_as_string, json_names, enum_as_number
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local req = { f_int64 = 9007199254740993LL, f_uint64 = 5, f_enum = "COLOR_RED",
                          r_int64 = { 1 }, o_int32 = 0 }
            local res = assert(conn:call(t.S, "Echo", req, { int64_as_string = true, json_names = true,
                                                            enum_as_number = true }))
            ngx.say(t.dump(res))
            res = assert(conn:call(t.S, "Echo", {}, { emit_defaults = true }))
            ngx.say(res.f_int32, " ", res.f_string == "", " ", res.f_enum, " ", res.f_bool,
                    " ", #res.r_int32, " ", next(res.m_string), " ", res.f_message, " ",
                    res.o_int32, " ", res.c_string, " ", res.w_int64)
            ngx.say(getmetatable(res.r_int32) == require("resty.ffi").array_mt)
            res = assert(conn:call(t.S, "Echo", {}))
            ngx.say(next(res))
        }
    }
--- request
GET /t
--- response_body
{"fEnum"=1,"fInt64"="9007199254740993","fUint64"="5","oInt32"=0,"rInt64"={1="1"}}
0 true COLOR_UNSPECIFIED false 0 nil nil nil nil nil
true
nil
--- no_error_log
[error]



=== TEST 5: a request with a wrong field type fails clearly and nothing is sent
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            local function try(method, req)
                local res, err, status = conn:call(t.S, method, req)
                ngx.say(res, " | ", err, " | ", status)
            end
            try("Sleep", { id = "never-sent", ms = "a while" })
            try("Echo", { f_message = { children = { {}, { value = true } } } })
            try("Echo", { f_int32 = 2^40 })
            try("Echo", { f_enum = "COLOR_PURPLE" })
            try("Echo", { no_such_field = 1 })
            try("Echo", { c_string = "a", c_int64 = 1 })
            try("Echo", { f_string = "\255" })
            try("Echo", { r_int32 = "nope" })
            try("Echo", { w_any = { name = "no type" } })
            -- the server never saw the Sleep call
            local res = assert(conn:call(t.S, "Canceled", { id = "never-sent" }))
            ngx.say("seen: ", res.seen or false, " finished: ", res.finished or false)
            local ok, perr = pcall(conn.call, conn, t.S, "Echo", "not a table")
            ngx.say(perr)
        }
    }
--- request
GET /t
--- response_body
nil | request rffitest.v1.SleepRequest: field ms: int32 (integer) expected, got string "a while" | nil
nil | request rffitest.v1.AllTypes: field f_message.children[2].value: int32 (integer) expected, got boolean | nil
nil | request rffitest.v1.AllTypes: field f_int32: 1099511627776 out of range for int32 | nil
nil | request rffitest.v1.AllTypes: field f_enum: rffitest.v1.Color has no value "COLOR_PURPLE" | nil
nil | request rffitest.v1.AllTypes: rffitest.v1.AllTypes has no field "no_such_field" | nil
nil | request rffitest.v1.AllTypes: oneof choice: both c_int64 and c_string are set | nil
nil | request rffitest.v1.AllTypes: field f_string: string is not valid UTF-8 (use a bytes field for binary data) | nil
nil | request rffitest.v1.AllTypes: field r_int32: an array expected, got string "nope" | nil
nil | request rffitest.v1.AllTypes: field w_any: google.protobuf.Any: the "@type" key (a type URL) is missing | nil
seen: false finished: false
resty.ffi.grpc.call: argument #3 (request) must be a table, got string
--- no_error_log
[error]



=== TEST 6: failed calls return nil, "NAME: message", status for every code
--- config
    location = /t {
        content_by_lua_block {
            local t = require "t_grpc"
            local conn = t.conn()
            for code = 1, 16 do
                local res, err, st = conn:call(t.S, "Fail", { code = code, message = "m" .. code })
                ngx.say(res, " ", err, " ", st.code, " ", st.name, " ", st.message)
            end
            local _, err, st = conn:call(t.S, "Fail", { code = 9, message = "with detail",
                                                       detail = { name = "why", value = 42 } })
            ngx.say(err, " ", t.dump(st.details))
        }
    }
--- request
GET /t
--- response_body
nil CANCELLED: m1 1 CANCELLED m1
nil UNKNOWN: m2 2 UNKNOWN m2
nil INVALID_ARGUMENT: m3 3 INVALID_ARGUMENT m3
nil DEADLINE_EXCEEDED: m4 4 DEADLINE_EXCEEDED m4
nil NOT_FOUND: m5 5 NOT_FOUND m5
nil ALREADY_EXISTS: m6 6 ALREADY_EXISTS m6
nil PERMISSION_DENIED: m7 7 PERMISSION_DENIED m7
nil RESOURCE_EXHAUSTED: m8 8 RESOURCE_EXHAUSTED m8
nil FAILED_PRECONDITION: m9 9 FAILED_PRECONDITION m9
nil ABORTED: m10 10 ABORTED m10
nil OUT_OF_RANGE: m11 11 OUT_OF_RANGE m11
nil UNIMPLEMENTED: m12 12 UNIMPLEMENTED m12
nil INTERNAL: m13 13 INTERNAL m13
nil UNAVAILABLE: m14 14 UNAVAILABLE m14
nil DATA_LOSS: m15 15 DATA_LOSS m15
nil UNAUTHENTICATED: m16 16 UNAUTHENTICATED m16
FAILED_PRECONDITION: with detail {1={"@type"="type.googleapis.com/rffitest.v1.Inner","name"="why","value"=42}}
--- no_error_log
[error]



=== TEST 7: a proto with a syntax error names the file and the line
--- config
    location = /t {
        content_by_lua_block {
            local grpc = require "resty.ffi.grpc"
            local ok, err = grpc.load_string("broken/bad.proto",
                'syntax = "proto3";\npackage bad;\n\nmessage M {\n  int32 a = 1\n  string b = 2;\n}\n')
            ngx.say(ok, " ", err)
            ok, err = grpc.load("does/not/exist.proto", { "$TEST_NGINX_ROOT/t/servers/grpc/proto" })
            ngx.say(ok, " ", err)
            ok, err = grpc.load_string("uses.proto",
                'syntax = "proto3";\nmessage U {\n  Missing m = 1;\n}\n')
            ngx.say(ok, " ", err)
        }
    }
--- request
GET /t
--- response_body_like chomp
^nil grpc\.load: broken/bad\.proto:6:3: syntax error: [^\n]+
nil grpc\.load: could not resolve path "does/not/exist\.proto"[^\n]*
nil grpc\.load: uses\.proto:3:3: field U\.m: unknown type Missing$
--- no_error_log
[error]



=== TEST 8: load_string, a descriptor set, unknown services and methods
--- config
    location = /t {
        content_by_lua_block {
            local grpc = require "resty.ffi.grpc"
            local t = require "t_grpc"
            local conn = t.conn()
            ngx.say(table.concat(assert(grpc.load_string("extra/greet.proto", [[
syntax = "proto3";
package extra;
import "rffitest/v1/test.proto";
service Greeter { rpc Hi(rffitest.v1.HelloRequest) returns (rffitest.v1.HelloReply); }
]], { t.PROTO_DIR })), ","))
            local _, err = conn:call("extra.Greeter", "Hi", { name = "x" })
            ngx.say(err)
            _, err = conn:call("no.Such", "Method", {})
            ngx.say(err)
            _, err = conn:call(t.S, "Nope", {})
            ngx.say(err)
            _, err = conn:call(t.S, "ServerStream", {})
            ngx.say(err)
            -- a FileDescriptorSet built by hand: one file, one service
            local pb = function(field, s) return string.char(field * 8 + 2, #s) .. s end
            local file = pb(1, "ds.proto") .. pb(2, "ds")
                         .. pb(4, pb(1, "Ping"))
                         .. pb(6, pb(1, "Svc") .. pb(2, pb(1, "Call") .. pb(2, ".ds.Ping") .. pb(3, ".ds.Ping")))
                         .. pb(12, "proto3")
            ngx.say(table.concat(assert(grpc.load_descriptor_set(pb(1, file))), ","))
            ngx.say(select(2, grpc.load_descriptor_set("\255garbage")))
            ngx.say(table.concat(grpc.services(), ","))
        }
    }
--- request
GET /t
--- response_body
extra.Greeter
UNIMPLEMENTED: unknown service extra.Greeter
grpc: unknown service "no.Such" (load its .proto with grpc.load or connect with reflection = true)
grpc: service rffitest.v1.TestService has no method "Nope"
grpc: /rffitest.v1.TestService/ServerStream is a streaming method: use server_stream
ds.Svc
grpc.load_descriptor_set: not a serialized FileDescriptorSet (invalid wire format)
ds.Svc,extra.Greeter,rffitest.v1.TestService
--- no_error_log
[error]
