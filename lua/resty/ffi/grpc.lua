-- resty.ffi.grpc: a gRPC client for OpenResty on grpc-go (modules/grpc),
-- with plain Lua tables for messages and .proto files loaded at run time.
--
--   local grpc = require "resty.ffi.grpc"
--   assert(grpc.load("helloworld.proto", { "/etc/protos" }))
--   local conn = assert(grpc.connect("127.0.0.1:50051"))
--   local res, err, status = conn:call("helloworld.Greeter", "SayHello", { name = "x" })
--
-- docs/grpc.md documents every function, option and the type mapping.

local rffi = require "resty.ffi"

local type = type
local error = error
local pairs = pairs
local tostring = tostring
local setmetatable = setmetatable
local getmetatable = getmetatable
local select = select
local concat = table.concat

local _M = { _VERSION = "0.1.0" }

local DEFAULT_TIMEOUT = 60000 -- ms, the default deadline of unary calls
local MARGIN = 5000           -- ms Lua waits beyond a deadline, so the
                              -- gRPC status (DEADLINE_EXCEEDED) wins
local NO_DEADLINE = 2147483647

local protos_rt -- the "grpc.protos" runtime
local loads = {} -- cache key -> services list

local function protos()
    if protos_rt then
        return protos_rt
    end
    local rt, err = rffi.open("grpc.protos")
    if not rt then
        return nil, err
    end
    protos_rt = rt
    return rt
end

local function check_strings(v, fname, n, what)
    local tv = type(v)
    if tv == "string" then
        return v
    end
    if tv ~= "table" then
        error("resty.ffi.grpc." .. fname .. ": argument #" .. n .. " (" .. what
              .. ") must be a string or an array of strings, got " .. tv, 3)
    end
    for i = 1, #v do
        if type(v[i]) ~= "string" then
            error("resty.ffi.grpc." .. fname .. ": argument #" .. n .. " (" .. what
                  .. ") must hold strings, item " .. i .. " is a " .. type(v[i]), 3)
        end
    end
    return concat(v, "\0")
end

local function cached_load(key, op, ...)
    local services = loads[key]
    if services then
        return services
    end
    local rt, err = protos()
    if not rt then
        return nil, err
    end
    services, err = rt:call(op, ...)
    if not services then
        return nil, err
    end
    loads[key] = services
    return services
end

-- load(paths, import_paths) -> array of the services defined, or nil, err.
-- Once per worker: later calls with the same arguments return the cache.
function _M.load(paths, import_paths)
    local key = check_strings(paths, "load", 1, "paths")
    if import_paths ~= nil then
        key = key .. "\1" .. check_strings(import_paths, "load", 2, "import_paths")
    end
    return cached_load("f\1" .. key, "load", paths, import_paths)
end

-- load_string(name, source [, import_paths]) -> services, or nil, err.
function _M.load_string(name, source, import_paths)
    if type(name) ~= "string" then
        error("resty.ffi.grpc.load_string: argument #1 (name) must be a string, got " .. type(name), 2)
    end
    if type(source) ~= "string" then
        error("resty.ffi.grpc.load_string: argument #2 (source) must be a string, got " .. type(source), 2)
    end
    local key = "s\1" .. name .. "\1" .. source
    if import_paths ~= nil then
        key = key .. "\1" .. check_strings(import_paths, "load_string", 3, "import_paths")
    end
    return cached_load(key, "load_string", name, source, import_paths)
end

-- load_descriptor_set(bytes): a serialized google.protobuf.FileDescriptorSet
-- (protoc --include_imports --descriptor_set_out=...).
function _M.load_descriptor_set(bytes)
    if type(bytes) ~= "string" then
        error("resty.ffi.grpc.load_descriptor_set: argument #1 (bytes) must be a string, got "
              .. type(bytes), 2)
    end
    return cached_load("d\1" .. bytes, "load_descriptor_set", bytes)
end

-- services() -> sorted array of every loaded service name.
function _M.services()
    local rt, err = protos()
    if not rt then
        return nil, err
    end
    return rt:call("services")
end

---------------------------------------------------------------- connections

local conn_mt = {}
conn_mt.__index = conn_mt

local stream_mt = {}
stream_mt.__index = stream_mt

local conns = setmetatable({}, { __mode = "k" }) -- runtime object -> conn

-- connect(target, opts) -> conn, or nil, err. One grpc-go ClientConn per
-- worker for each distinct (target, opts); it connects on first use.
function _M.connect(target, opts)
    if type(target) ~= "string" then
        error("resty.ffi.grpc.connect: argument #1 (target) must be a string, got " .. type(target), 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("resty.ffi.grpc.connect: argument #2 (opts) must be a table or nil, got " .. type(opts), 2)
    end
    local o = { target = target }
    local timeout = DEFAULT_TIMEOUT
    if opts then
        for k, v in pairs(opts) do
            o[k] = v
        end
        if opts.timeout ~= nil then
            if type(opts.timeout) ~= "number" or opts.timeout < 0 then
                error("resty.ffi.grpc.connect: opts.timeout must be a number of milliseconds", 2)
            end
            timeout = opts.timeout
        end
    end
    local rt, err = rffi.open("grpc", o)
    if not rt then
        return nil, err
    end
    local c = conns[rt]
    if not c then
        c = setmetatable({ rt = rt, timeout = timeout, target = target }, conn_mt)
        conns[rt] = c
    end
    return c
end

-- wait_for(default, opts): how long Lua waits for a call whose deadline is
-- opts.timeout (or the connection's).
local function wait_for(default, opts, fname)
    local t = default
    if opts ~= nil then
        if type(opts) ~= "table" then
            error("resty.ffi.grpc." .. fname .. ": the options must be a table or nil, got "
                  .. type(opts), 3)
        end
        local ot = opts.timeout
        if ot ~= nil then
            if type(ot) ~= "number" or ot < 0 then
                error("resty.ffi.grpc." .. fname .. ": opts.timeout must be a number of"
                      .. " milliseconds, got " .. tostring(ot), 3)
            end
            t = ot
        end
    end
    if t == 0 or t + MARGIN > NO_DEADLINE then
        return NO_DEADLINE
    end
    return t + MARGIN
end

local function check_names(service, method, fname)
    if type(service) ~= "string" then
        error("resty.ffi.grpc." .. fname .. ": argument #1 (service) must be a string, got "
              .. type(service), 3)
    end
    if type(method) ~= "string" then
        error("resty.ffi.grpc." .. fname .. ": argument #2 (method) must be a string, got "
              .. type(method), 3)
    end
end

local function check_conn(c, fname)
    if type(c) ~= "table" or getmetatable(c) ~= conn_mt then
        error("resty.ffi.grpc." .. fname .. ": a connection from grpc.connect() expected, got "
              .. type(c), 3)
    end
end

-- conn:call(service, method, request, opts) -> response table, or
-- nil, err, status. opts: timeout (ms), metadata, wait_for_ready,
-- want_headers (then a third value {headers, trailers} on success too),
-- emit_defaults, int64_as_string, json_names, enum_as_number.
function conn_mt.call(c, service, method, request, opts)
    check_conn(c, "call")
    check_names(service, method, "call")
    local tr = type(request)
    if tr ~= "table" and request ~= nil then
        error("resty.ffi.grpc.call: argument #3 (request) must be a table, got " .. tr, 2)
    end
    local res, err, status = c.rt:call_timeout(wait_for(c.timeout, opts, "call"), "call",
                                               service, method, request, opts)
    if res == nil then
        if status ~= nil then
            return nil, err, status
        end
        return nil, err
    end
    if opts and opts.want_headers then
        return res[1], nil, res[2]
    end
    return res
end

local function new_stream(c, h, client_streaming)
    return setmetatable({ h = h, conn = c, timeout = c.timeout,
                          client_streaming = client_streaming }, stream_mt)
end

local function open_stream(c, op, fname, client_streaming, ...)
    local opts = select(select("#", ...), ...)
    local h, err, status = c.rt:call_timeout(wait_for(c.timeout, opts, fname), op, ...)
    if not h then
        if status ~= nil then
            return nil, err, status
        end
        return nil, err
    end
    return new_stream(c, h, client_streaming)
end

-- conn:server_stream(service, method, request, opts) -> stream, or nil, err, status
function conn_mt.server_stream(c, service, method, request, opts)
    check_conn(c, "server_stream")
    check_names(service, method, "server_stream")
    if request ~= nil and type(request) ~= "table" then
        error("resty.ffi.grpc.server_stream: argument #3 (request) must be a table, got "
              .. type(request), 2)
    end
    return open_stream(c, "server_stream", "server_stream", false, service, method, request, opts)
end

-- conn:client_stream(service, method, opts) -> stream, or nil, err, status
function conn_mt.client_stream(c, service, method, opts)
    check_conn(c, "client_stream")
    check_names(service, method, "client_stream")
    return open_stream(c, "client_stream", "client_stream", true, service, method, opts)
end

-- conn:bidi_stream(service, method, opts) -> stream, or nil, err, status
function conn_mt.bidi_stream(c, service, method, opts)
    check_conn(c, "bidi_stream")
    check_names(service, method, "bidi_stream")
    return open_stream(c, "bidi_stream", "bidi_stream", false, service, method, opts)
end

-- conn:health(service, opts) -> "SERVING" (or another status name), or nil, err, status
function conn_mt.health(c, service, opts)
    check_conn(c, "health")
    if service ~= nil and type(service) ~= "string" then
        error("resty.ffi.grpc.health: argument #2 (service) must be a string or nil, got "
              .. type(service), 2)
    end
    return c.rt:call_timeout(wait_for(c.timeout, opts, "health"), "health", service or "", opts)
end

-- grpc.health(conn, service, opts): the same as conn:health(service, opts).
function _M.health(c, service, opts)
    check_conn(c, "health")
    return conn_mt.health(c, service, opts)
end

-- conn:state() -> "IDLE" | "CONNECTING" | "READY" | "TRANSIENT_FAILURE" | "SHUTDOWN"
function conn_mt.state(c)
    check_conn(c, "state")
    return c.rt:call("state")
end

---------------------------------------------------------------- streams

local function check_stream(s, fname)
    if type(s) ~= "table" or getmetatable(s) ~= stream_mt then
        error("resty.ffi.grpc.stream:" .. fname .. ": a stream expected, got " .. type(s), 3)
    end
end

local function check_timeout(t, fname, default)
    if t == nil then
        return default
    end
    if type(t) ~= "number" or t < 0 then
        error("resty.ffi.grpc.stream:" .. fname .. ": argument #1 (timeout) must be a number of"
              .. " milliseconds, got " .. tostring(t), 3)
    end
    return t
end

-- stream:recv(timeout_ms) -> message, or nil, "eof" at the end, or nil,
-- "timeout" (the stream stays usable), or nil, err, status.
function stream_mt.recv(s, timeout)
    check_stream(s, "recv")
    return s.h:call_timeout(check_timeout(timeout, "recv", s.timeout), "recv")
end

-- stream:recv_many(max, timeout_ms) -> array of 1..max messages (waits
-- for the first, takes the others already received), or what recv returns
-- at the end / on errors. One round trip for a burst of messages.
function stream_mt.recv_many(s, max, timeout)
    check_stream(s, "recv_many")
    if type(max) ~= "number" or max < 1 then
        error("resty.ffi.grpc.stream:recv_many: argument #1 (max) must be a positive number, got "
              .. tostring(max), 2)
    end
    return s.h:call_timeout(check_timeout(timeout, "recv_many", s.timeout), "recv_many", max)
end

-- stream:send(msg, timeout_ms) -> true, or nil, err [, status]
function stream_mt.send(s, msg, timeout)
    check_stream(s, "send")
    if type(msg) ~= "table" then
        error("resty.ffi.grpc.stream:send: argument #1 (msg) must be a table, got " .. type(msg), 2)
    end
    return s.h:call_timeout(check_timeout(timeout, "send", s.timeout), "send", msg)
end

-- stream:close_send(timeout_ms): half-close. A client stream returns the
-- server's response (or nil, err, status); other streams return true.
function stream_mt.close_send(s, timeout)
    check_stream(s, "close_send")
    return s.h:call_timeout(check_timeout(timeout, "close_send", s.timeout), "close_send")
end

-- stream:headers() -> response headers (waits for them).
function stream_mt.headers(s, timeout)
    check_stream(s, "headers")
    return s.h:call_timeout(check_timeout(timeout, "headers", s.timeout), "headers")
end

-- stream:trailers() -> trailers, once recv returned the end of the stream.
function stream_mt.trailers(s)
    check_stream(s, "trailers")
    return s.h:call("trailers")
end

-- stream:close(): cancel the call (CANCELLED on the server if still
-- running). Streams are also closed when garbage-collected and at worker
-- exit. Returns true.
function stream_mt.close(s)
    check_stream(s, "close")
    return s.h:close()
end

return _M
