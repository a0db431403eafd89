-- Helpers for the t/grpc suites: connect to the project's test server
-- (t/servers/grpc) with its proto loaded, and print Lua values in one
-- deterministic form so round trips compare exactly.
local ffi = require "ffi"
local grpc = require "resty.ffi.grpc"

local _M = {}

local here = debug.getinfo(1, "S").source:sub(2)
_M.ROOT = here:match("^(.*)/t/lib/[^/]*$")
_M.PROTO_DIR = _M.ROOT .. "/t/servers/grpc/proto"
_M.RUN = (os.getenv("RFFI_RUN") or (_M.ROOT .. "/.run")) .. "/grpc"
_M.TLS = _M.RUN .. "/tls"
_M.S = "rffitest.v1.TestService"
_M.grpc = grpc

-- conn(target, opts): the test proto loaded, a connection made.
function _M.conn(target, opts)
    assert(grpc.load("rffitest/v1/test.proto", { _M.PROTO_DIR }))
    return assert(grpc.connect(target or "127.0.0.1:15051", opts))
end

local int64_t = ffi.typeof("int64_t")
local uint64_t = ffi.typeof("uint64_t")

local function dump(v, out)
    local t = type(v)
    if t == "table" then
        if v == ngx.null then
            out[#out + 1] = "null"
            return
        end
        local keys = {}
        for k in pairs(v) do
            keys[#keys + 1] = k
        end
        table.sort(keys, function(a, b)
            if type(a) ~= type(b) then
                return type(a) < type(b)
            end
            if type(a) == "boolean" then
                return not a and b
            end
            return a < b
        end)
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
            if i > 1 then
                out[#out + 1] = ","
            end
            dump(k, out)
            out[#out + 1] = "="
            dump(v[k], out)
        end
        out[#out + 1] = "}"
    elseif t == "string" then
        out[#out + 1] = string.format("%q", v):gsub("\n", "n")
    elseif t == "number" then
        if v == math.floor(v) and math.abs(v) < 2^53 then
            out[#out + 1] = string.format("%d", v)
        else
            out[#out + 1] = string.format("%.17g", v)
        end
    elseif t == "cdata" and (ffi.istype(int64_t, v) or ffi.istype(uint64_t, v)) then
        out[#out + 1] = tostring(v)
    else
        out[#out + 1] = tostring(v)
    end
end

-- dump(v): a deterministic one-line rendering (sorted keys, exact numbers,
-- int64 cdata as 123LL / 123ULL).
function _M.dump(v)
    local out = {}
    dump(v, out)
    return table.concat(out)
end

return _M
