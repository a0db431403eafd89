-- resty.ffi.kafka: Kafka producers and consumers for nginx-lua, on
-- github.com/segmentio/kafka-go running inside the worker (modules/kafka).
--
--   local kafka = require "resty.ffi.kafka"
--   local p = kafka.producer{ brokers = { "127.0.0.1:9092" } }
--   p:send_async("logs", nil, line)           -- any phase, log included
--   local ok, err = p:send("events", key, value, { trace = id })  -- waits for the ack
--
-- send_async never waits. Messages collect in a small Lua-side chunk that
-- is handed to Go in one fire-and-forget call (every async_chunk messages,
-- or after async_linger ms), where a bounded buffer feeds kafka-go's async
-- writer. The buffer level is known here without asking Go: Go publishes
-- how many messages it finished in a gauge (shared memory, see
-- modules/kafka/gauge.go), Lua counts how many it handed over, so "buffer
-- full" is answered at once.
--
-- lua-resty-kafka's producer surface is here too:
--   local producer = require "resty.ffi.kafka"
--   local p = producer:new(broker_list, producer_config)
--   p:send(topic, key, message)

local ffi = require "ffi"
local rffi = require "resty.ffi"
local codec = require "resty.ffi.codec"

local ffi_cast = ffi.cast
local C = ffi.C
local tonumber = tonumber
local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local setmetatable = setmetatable
local ngx = ngx
local ngx_log = ngx.log
local ngx_ERR = ngx.ERR
local ngx_null = ngx.null
local timer_at = ngx.timer.at
local timer_every = ngx.timer.every
local array_mt = codec.array_mt

local ok, new_tab = pcall(require, "table.new")
if not ok then
    new_tab = function() return {} end
end

-- (malloc/free may be declared by other modules already)
pcall(ffi.cdef, "void *malloc(size_t size);")
pcall(ffi.cdef, "void free(void *p);")
ffi.cdef [[
typedef struct {
    double done;      /* async messages finished: delivered, failed or refused */
    double failures;  /* failed messages waiting to be taken */
    double pad[6];
} rffi_kafka_gauge_t;
]]
local gauge_ptr_t = ffi.typeof("const rffi_kafka_gauge_t *")

local _M = { _VERSION = "0.1.0" }

-- options handled here, not by Go
local lua_producer_opts = {
    error_handler = true, error_handler_interval = true,
    async_chunk = true, async_linger = true,
}
local conn_opts = {
    brokers = true, client_id = true, tls = true, sasl = true,
    connect_timeout = true, request_timeout = true,
}

local function copy_without(t, drop)
    local out = {}
    for k, v in pairs(t) do
        if not drop[k] then
            out[k] = v
        end
    end
    return out
end

local function check_opts(fname, opts)
    if type(opts) ~= "table" then
        error("resty.ffi.kafka." .. fname .. ": argument #1 (opts) must be a table, got "
              .. type(opts), 3)
    end
end

local function check_string(fname, i, name, v, optional)
    if type(v) ~= "string" and not (optional and v == nil) then
        error("resty.ffi.kafka." .. fname .. ": argument #" .. i .. " (" .. name
              .. ") must be a string" .. (optional and " or nil" or "") .. ", got "
              .. type(v), 3)
    end
end

local function check_headers(fname, v)
    if v ~= nil and type(v) ~= "table" then
        error("resty.ffi.kafka." .. fname .. ": argument #4 (headers) must be a table or nil, got "
              .. type(v), 3)
    end
end

local function ms_opt(opts, key, def)
    local v = opts[key]
    if v == nil then
        return def
    end
    if type(v) ~= "number" or v < 0 then
        error("resty.ffi.kafka: option '" .. key .. "' must be a non-negative number of"
              .. " milliseconds, got " .. tostring(v), 3)
    end
    return v
end

---------------------------------------------------------------- producer

local producer_mt = {}
producer_mt.__index = producer_mt

local by_config = {} -- encoded Go options -> Lua producer (one per configuration)
local by_table = setmetatable({}, { __mode = "k" }) -- opts table -> Lua producer
local gauges = {}    -- every gauge allocated, kept for the worker's life
local GAUGE_SIZE = ffi.sizeof("rffi_kafka_gauge_t")

local hand_over

local function linger_timer(premature, self)
    self.timer_pending = false
    -- premature (worker exiting) included: hand over so Go flushes it
    hand_over(self)
end

-- hand_over gives the current chunk to Go in one fire-and-forget call.
hand_over = function(self)
    local n = self.qn
    if n == 0 then
        return true
    end
    local q = self.queue
    self.queue = setmetatable(new_tab(self.chunk * 4, 0), array_mt)
    self.qn = 0
    local ok, err = self.rt:submit("send_batch", q)
    if ok then
        self.submitted = self.submitted + n
        return true
    end
    -- not handed over (the core is busy or closing): they never reached Go,
    -- so they go to the error handler from here
    self.lost = self.lost + n
    local lost = self.lost_msgs
    for i = 1, n * 4, 4 do
        if #lost < 10000 then
            local key, value, headers = q[i + 1], q[i + 2], q[i + 3]
            lost[#lost + 1] = {
                topic = q[i], key = key or nil, value = value or nil, headers = headers or nil,
                partition = -1, err = err, kind = "submit", retryable = true,
            }
        end
    end
    ngx_log(ngx_ERR, "resty.ffi.kafka: ", n, " messages could not be handed to Go: ", err)
    return nil, err
end

local function level(self)
    return self.qn + self.submitted - self.gauge.done
end

-- p:send_async(topic, key, value, headers) -> true, or nil, "buffer full"
-- Never waits; works in every phase.
function producer_mt.send_async(self, topic, key, value, headers)
    if type(topic) ~= "string" then
        check_string("send_async", 1, "topic", topic)
    end
    if key ~= nil and type(key) ~= "string" then
        check_string("send_async", 2, "key", key, true)
    end
    if value ~= nil and type(value) ~= "string" then
        check_string("send_async", 3, "value", value, true)
    end
    if headers ~= nil then
        check_headers("send_async", headers)
    end
    if self.qn + self.submitted - self.gauge.done >= self.max_buffering then
        self.refused = self.refused + 1
        return nil, "buffer full"
    end
    local q, i = self.queue, self.qn * 4
    q[i + 1] = topic
    q[i + 2] = key or false
    q[i + 3] = value or false
    q[i + 4] = headers or false
    local n = self.qn + 1
    self.qn = n
    if n >= self.chunk then
        return hand_over(self)
    end
    if not self.timer_pending then
        local ok = timer_at(self.linger, linger_timer, self)
        if ok then
            self.timer_pending = true
        else
            -- no timer (the worker is exiting): hand over now
            return hand_over(self)
        end
    end
    return true
end

-- p:send(topic, key, value, headers) -> true, or nil, err. Waits for the
-- broker's ack (acks option), up to request_timeout.
function producer_mt.send(self, topic, key, value, headers)
    check_string("send", 1, "topic", topic)
    check_string("send", 2, "key", key, true)
    check_string("send", 3, "value", value, true)
    check_headers("send", headers)
    return self.rt:call_timeout(self.send_timeout, "send", topic, key, value, headers)
end

-- p:flush(timeout_ms) -> true, or nil, err: waits until every message
-- given to send_async so far is delivered or failed.
function producer_mt.flush(self, timeout)
    timeout = timeout or 10000
    if type(timeout) ~= "number" or timeout < 0 then
        error("resty.ffi.kafka.flush: argument #1 (timeout) must be a number of milliseconds", 2)
    end
    local ok, err = hand_over(self)
    if not ok then
        return nil, err
    end
    return self.rt:call_timeout(timeout + 1000, "flush", timeout, self.submitted)
end

-- p:stats() -> table: sent, failed, buffered, bytes, errors (by kind), ...
function producer_mt.stats(self)
    local st, err = self.rt:call_timeout(5000, "stats")
    if not st then
        return nil, err
    end
    st.buffered = level(self)
    st.lua_queued = self.qn
    st.refused = st.refused + self.refused
    st.lost = self.lost
    return st
end

-- p:buffered() -> messages accepted by send_async and not yet finished
-- (no call into Go: works in every phase).
function producer_mt.buffered(self)
    return level(self)
end

-- failures not yet given to the error handler: those Lua could not hand over,
-- then those Go keeps.
local function take_failures(self)
    local out = self.lost_msgs
    if #out > 0 then
        self.lost_msgs = {}
    else
        out = nil
    end
    if self.gauge.failures > 0 then
        local more, err = self.rt:call_timeout(5000, "failures", 1000)
        if not more then
            ngx_log(ngx_ERR, "resty.ffi.kafka: fetching failed messages: ", err)
        else
            if not out then
                return more
            end
            for _, f in ipairs(more) do
                out[#out + 1] = f
            end
        end
    end
    return out
end

local function default_error_handler(failures)
    local by = {}
    for _, f in ipairs(failures) do
        local k = f.topic .. ": " .. tostring(f.err)
        by[k] = (by[k] or 0) + 1
    end
    for k, n in pairs(by) do
        ngx_log(ngx_ERR, "resty.ffi.kafka: ", n, " messages failed, topic ", k)
    end
end

local function poll_failures(premature, self)
    local again = true
    while again do
        local failures = take_failures(self)
        if not failures then
            return
        end
        for _, f in ipairs(failures) do
            if f.key == ngx_null then f.key = nil end
            if f.headers == ngx_null then f.headers = nil end
        end
        local ok, err = pcall(self.error_handler, failures)
        if not ok then
            ngx_log(ngx_ERR, "resty.ffi.kafka: error_handler failed: ", err)
        end
        again = not premature and #failures >= 1000
    end
end

local function new_producer(opts, fname)
    local go_opts = copy_without(opts, lua_producer_opts)
    local handler = opts.error_handler
    if handler ~= nil and type(handler) ~= "function" then
        error("resty.ffi.kafka." .. fname .. ": option 'error_handler' must be a function", 3)
    end
    local chunk = opts.async_chunk or 200
    if type(chunk) ~= "number" or chunk < 1 then
        error("resty.ffi.kafka." .. fname .. ": option 'async_chunk' must be a positive number", 3)
    end
    local linger = ms_opt(opts, "async_linger", 5) / 1000
    local interval = ms_opt(opts, "error_handler_interval", 1000) / 1000
    local key = codec.to_string(go_opts)
    local self = by_config[key]
    if self then
        if handler then
            self.error_handler = handler
        end
        return self
    end
    -- The gauge Go publishes its counters in: allocated here, handed to Go
    -- by address, never freed (Go may write to it until the producer closes
    -- at worker exit; one per configuration and worker).
    local mem = C.malloc(GAUGE_SIZE)
    if mem == nil then
        return nil, "resty.ffi.kafka: out of memory"
    end
    ffi.fill(mem, GAUGE_SIZE)
    go_opts.gauge = tonumber(ffi_cast("uintptr_t", mem))
    local rt, err = rffi.open("kafka_producer", go_opts)
    if not rt then
        C.free(mem) -- Go refused the options: it never saw the address
        return nil, err
    end
    gauges[#gauges + 1] = mem
    local mb = go_opts.max_buffering or 50000
    self = setmetatable({
        rt = rt,
        gauge = ffi_cast(gauge_ptr_t, mem),
        max_buffering = mb,
        chunk = chunk,
        linger = linger,
        queue = setmetatable(new_tab(chunk * 4, 0), array_mt),
        qn = 0,
        submitted = 0,
        refused = 0,
        lost = 0,
        lost_msgs = {},
        timer_pending = false,
        send_timeout = go_opts.request_timeout or 10000,
        error_handler = handler or default_error_handler,
    }, producer_mt)
    by_config[key] = self
    local ok2, terr = timer_every(interval, poll_failures, self)
    if not ok2 then
        ngx_log(ngx_ERR, "resty.ffi.kafka: cannot start the error handler timer: ", terr)
    end
    return self
end

-- kafka.producer(opts) -> producer, or nil, err. One Go producer per
-- configuration and worker: calling it per request is cheap (cached).
function _M.producer(opts)
    local p = by_table[opts]
    if p then
        return p
    end
    check_opts("producer", opts)
    local err
    p, err = new_producer(opts, "producer")
    if p then
        by_table[opts] = p
    end
    return p, err
end

---------------------------------------------------------------- lua-resty-kafka surface

local compat_mt = {}
compat_mt.__index = compat_mt

-- lua-resty-kafka option -> ours (nil: accepted and ignored)
local compat_map = {
    producer_type = false, required_acks = "required_acks", request_timeout = "request_timeout",
    batch_num = "batch_size", batch_size = "batch_bytes", flush_time = "batch_timeout",
    max_buffering = "max_buffering", max_retry = "max_attempts", retry_backoff = "backoff_min",
    socket_timeout = "connect_timeout", client_id = "client_id",
    ssl = false, ssl_verify = false, error_handle = false,
    keepalive_timeout = false, keepalive_size = false, refresh_interval = false,
    api_version = false, partitioner = false, pool_size = false, resolver = false,
}

-- producer:new(broker_list, producer_config [, cluster_name]) as in
-- lua-resty-kafka: broker_list = { { host = , port = }, ... }.
function _M.new(self, broker_list, config)
    if self ~= _M then
        -- called as kafka.new(broker_list, config)
        self, broker_list, config = _M, self, broker_list
    end
    if type(broker_list) ~= "table" then
        error("resty.ffi.kafka.new: argument #1 (broker_list) must be a table of {host=, port=}", 2)
    end
    config = config or {}
    if type(config) ~= "table" then
        error("resty.ffi.kafka.new: argument #2 (producer_config) must be a table", 2)
    end
    if config.partitioner ~= nil then
        error("resty.ffi.kafka.new: a Lua partitioner function is not supported; use the"
              .. " 'balancer' option of kafka.producer (crc32, murmur2, hash, ...)", 2)
    end
    -- lua-resty-kafka's defaults, except flush_time: messages leave after
    -- our batch_timeout (100 ms) rather than its 1 s unless flush_time says so
    local opts = { brokers = broker_list, balancer = "crc32", required_acks = 1,
                   request_timeout = 2000 }
    for k, v in pairs(config) do
        local to = compat_map[k]
        if to == nil then
            -- one of ours (balancer, compression, ...)
            opts[k] = v
        elseif to then
            opts[to] = v
        end
    end
    if config.ssl then
        opts.tls = { verify = config.ssl_verify ~= false }
    end
    if config.batch_num then
        opts.async_chunk = config.batch_num
    end
    if config.max_retry then
        opts.max_attempts = config.max_retry + 1
    end
    local handle = config.error_handle
    if handle then
        -- error_handle(topic, partition_id, queue, index, err, retryable),
        -- queue = { key1, msg1, key2, msg2, ... }, index = 2 * count
        opts.error_handler = function(failures)
            local groups = {}
            for _, f in ipairs(failures) do
                local gk = f.topic .. "\0" .. tostring(f.partition) .. "\0" .. tostring(f.err)
                local g = groups[gk]
                if not g then
                    g = { topic = f.topic, partition = f.partition, err = f.err,
                          retryable = f.retryable, queue = {}, index = 0 }
                    groups[gk] = g
                end
                g.queue[g.index + 1] = f.key
                g.queue[g.index + 2] = f.value
                g.index = g.index + 2
            end
            for _, g in pairs(groups) do
                handle(g.topic, g.partition, g.queue, g.index, g.err, g.retryable)
            end
        end
    end
    local p, err = new_producer(opts, "new")
    if not p then
        return nil, err
    end
    return setmetatable({ p = p, async = config.producer_type == "async" }, compat_mt)
end

-- p:send(topic, key, message): async producers buffer (true, or nil,
-- "buffer full"); sync producers wait for the ack (true, or nil, err).
function compat_mt.send(self, topic, key, message)
    if self.async then
        return self.p:send_async(topic, key, message)
    end
    return self.p:send(topic, key, message)
end

function compat_mt.flush(self, timeout)
    return self.p:flush(timeout)
end

function compat_mt.stats(self)
    return self.p:stats()
end

---------------------------------------------------------------- consumer

local consumer_mt = {}
consumer_mt.__index = consumer_mt

local function client(opts)
    local c = {}
    for k in pairs(conn_opts) do
        c[k] = opts[k]
    end
    return rffi.open("kafka", c)
end

-- kafka.consumer(opts) -> consumer, or nil, err. Each call makes a new
-- group member (or partition reader); close it when done.
function _M.consumer(opts)
    check_opts("consumer", opts)
    local rt, err = client(opts)
    if not rt then
        return nil, err
    end
    local h
    h, err = rt:call_timeout(10000, "consumer", opts)
    if not h then
        return nil, err
    end
    return setmetatable({ h = h }, consumer_mt)
end

local function message(m)
    if m.key == ngx_null then m.key = nil end
    if m.headers == ngx_null then m.headers = nil end
    if m.value == ngx_null then m.value = nil end
    return m
end

local function check_fetch_timeout(fname, timeout)
    if timeout == nil then
        return 10000
    end
    if type(timeout) ~= "number" or timeout < 0 then
        error("resty.ffi.kafka." .. fname .. ": the timeout must be a number of milliseconds", 3)
    end
    return timeout
end

-- c:fetch(timeout_ms) -> { topic, partition, offset, key, value, headers,
-- time }, or nil, "timeout", or nil, err
function consumer_mt.fetch(self, timeout)
    timeout = check_fetch_timeout("fetch", timeout)
    local m, err = self.h:call_timeout(timeout + 5000, "fetch", timeout)
    if m == nil then
        return nil, err or "timeout"
    end
    return message(m)
end

-- c:fetch_batch(max, timeout_ms) -> array of messages (at least one), or
-- nil, "timeout", or nil, err. Waits up to timeout for the first message,
-- then takes what is ready (up to max).
function consumer_mt.fetch_batch(self, max, timeout)
    max = max or 1000
    if type(max) ~= "number" or max < 1 then
        error("resty.ffi.kafka.fetch_batch: argument #1 (max) must be a positive number", 2)
    end
    timeout = check_fetch_timeout("fetch_batch", timeout)
    local cols, err = self.h:call_timeout(timeout + 5000, "fetch_batch", max, timeout)
    if cols == nil then
        return nil, err or "timeout"
    end
    local n, topics, parts, offs, keys, vals, times, hdrs, gen =
        cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], cols[9]
    if hdrs == ngx_null then
        hdrs = nil
    end
    local out = new_tab(n, 0)
    for i = 1, n do
        local key = keys[i]
        if key == ngx_null then key = nil end
        local h = hdrs and hdrs[i]
        if h == ngx_null then h = nil end
        out[i] = { topic = topics[i], partition = parts[i], offset = offs[i],
                   key = key, value = vals[i], time = times[i], headers = h,
                   generation = gen }
    end
    return out
end

-- c:commit(msg or batch) -> true, or nil, err. Commits the highest offset
-- per partition (the message and everything before it in its partition).
function consumer_mt.commit(self, what)
    if type(what) ~= "table" then
        error("resty.ffi.kafka.commit: argument #1 must be a message or an array of messages", 2)
    end
    local flat = {}
    if what.offset ~= nil then
        flat[1], flat[2], flat[3], flat[4] = what.topic, what.partition, what.offset,
                                             what.generation or 0
    else
        local best = {}
        for i = 1, #what do
            local m = what[i]
            local k = m.topic .. "\0" .. m.partition
            local b = best[k]
            if not b or m.offset > b.offset then
                best[k] = m
            end
        end
        for _, m in pairs(best) do
            local n = #flat
            flat[n + 1], flat[n + 2], flat[n + 3], flat[n + 4] = m.topic, m.partition, m.offset,
                                                                 m.generation or 0
        end
        if #flat == 0 then
            return true
        end
    end
    return self.h:call_timeout(10000, "commit", flat)
end

function consumer_mt.stats(self)
    return self.h:call_timeout(5000, "stats")
end

-- c:close(): leave the group now (also done on GC and worker exit).
function consumer_mt.close(self)
    return self.h:close()
end

---------------------------------------------------------------- admin

local function admin(fname, opts, op, ...)
    check_opts(fname, opts)
    local rt, err = client(opts)
    if not rt then
        return nil, err
    end
    return rt:call_timeout(opts.request_timeout or 10000, op, ...)
end

-- kafka.create_topic(opts, topic, partitions, replication) -> true | nil, err
function _M.create_topic(opts, topic, partitions, replication)
    check_string("create_topic", 2, "topic", topic)
    return admin("create_topic", opts, "create_topic", topic, partitions or 1, replication or 1)
end

function _M.delete_topic(opts, topic)
    check_string("delete_topic", 2, "topic", topic)
    return admin("delete_topic", opts, "delete_topic", topic)
end

-- kafka.list_topics(opts) -> { "name", ... }
function _M.list_topics(opts)
    return admin("list_topics", opts, "list_topics")
end

-- kafka.partitions(opts, topic) -> { { id=, leader=, leader_id=, replicas=, isr= }, ... }
function _M.partitions(opts, topic)
    check_string("partitions", 2, "topic", topic)
    return admin("partitions", opts, "partitions", topic)
end

-- kafka.offsets(opts, topic) -> { { partition=, first=, last= }, ... }
function _M.offsets(opts, topic)
    check_string("offsets", 2, "topic", topic)
    return admin("offsets", opts, "offsets", topic)
end


return _M
