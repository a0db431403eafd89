-- resty.ffi.redis: Redis through go-redis/v9 running in this nginx worker.
--
-- Two surfaces over the same Go runtime (modules/redis):
--
--   * lua-resty-redis compatible: redis:new(), red:connect(host, port, opts),
--     red:get(k), ..., red:set_keepalive(); change the require line and the
--     code keeps working. Connections are go-redis's pool: connect() picks
--     the pool of that address, set_keepalive() gives nothing back (1).
--   * native: redis.new(opts) for single, cluster and sentinel clients,
--     cli:command(name, ...), cli:pipeline(fn), cli:transaction(fn),
--     cli:subscribe(channels) -> handle with recv(timeout) / close().
--
-- One command is one call into Go: the command name travels as the
-- operation, the arguments as they are; a pipeline is one call carrying
-- every command as a flat list (count, name, args..., count, name, ...).

local rffi = require "resty.ffi"

local type = type
local select = select
local pairs = pairs
local error = error
local tostring = tostring
local setmetatable = setmetatable
local getmetatable = getmetatable
local tonumber = tonumber
local unpack = unpack
local str_sub = string.sub
local str_find = string.find
local ngx = ngx
local null = ngx.null
local rffi_open = rffi.open

local ok, new_tab = pcall(require, "table.new")
if not ok or type(new_tab) ~= "function" then
    new_tab = function() return {} end
end

local _M = new_tab(0, 64)
_M._VERSION = "0.1.0"

local DEFAULT_TIMEOUT = 60000 -- ms, as lua_socket_read_timeout's default

-- The handle class's call_timeout, taken from the first object resty.ffi
-- gives us: calling it directly saves a wrapper on every command.
local call_timeout

local function open(opts)
    local rt, err = rffi_open("redis", opts)
    if rt and not call_timeout then
        call_timeout = getmetatable(rt).call_timeout
    end
    return rt, err
end

-- A runtime (a go-redis pool) is known healthy once a command on it
-- succeeded; after a transport failure, connect() checks it again so that
-- "connection refused" surfaces there, as with a cosocket.
local healthy = setmetatable({}, { __mode = "k" })

-- Transport failures mark the runtime for a check on the next connect().
local function failed(rt, err)
    if err ~= "timeout" then
        healthy[rt] = nil
    end
end

---------------------------------------------------------------- runtimes

-- runtimes[host][port] for connect() without options: no allocation.
local plain = {}
-- every runtime's options, to derive auth / select variants from
local configs = setmetatable({}, { __mode = "k" })
-- derived[rt][key] = runtime with other credentials or db
local derived = setmetatable({}, { __mode = "k" })

local function copy(t)
    local c = {}
    if t then
        for k, v in pairs(t) do
            c[k] = v
        end
    end
    return c
end

local function runtime_for(host, port, opts)
    local unix = str_sub(host, 1, 5) == "unix:"
    if unix then
        port = 0
    elseif port == nil then
        return nil, "no port specified"
    end
    if opts == nil then
        local ports = plain[host]
        local rt = ports and ports[port]
        if rt then
            return rt
        end
    end
    local cfg = copy(opts)
    cfg.addr = unix and host or host .. ":" .. tostring(port)
    local rt, err = open(cfg)
    if not rt then
        return nil, err
    end
    configs[rt] = cfg
    if opts == nil then
        local ports = plain[host]
        if not ports then
            ports = {}
            plain[host] = ports
        end
        ports[port] = rt
    end
    return rt
end

-- derive(rt, k1, v1, k2, v2): the runtime of rt's options with changes
local function derive(rt, k1, v1, k2, v2)
    local key = tostring(k1) .. "\0" .. tostring(v1) .. "\0" .. tostring(k2) .. "\0" .. tostring(v2)
    local d = derived[rt]
    if d and d[key] then
        return d[key]
    end
    local cfg = copy(configs[rt])
    cfg[k1] = v1
    if k2 then
        cfg[k2] = v2
    end
    local nrt, err = open(cfg)
    if not nrt then
        return nil, err
    end
    configs[nrt] = cfg
    if not d then
        d = {}
        derived[rt] = d
    end
    d[key] = nrt
    return nrt
end

-- check(rt, timeout): true when a connection to the server can be had.
-- An error reply (NOAUTH, ...) means the server answered: connected.
local function check(rt, timeout)
    if healthy[rt] then
        return true
    end
    local res, err, detail = call_timeout(rt, timeout, ".ping")
    if res or detail then
        healthy[rt] = true
        return true
    end
    return nil, err
end

---------------------------------------------------------------- compat

local mt = { __index = _M }
local new_client -- redis.new(opts), defined with the native surface

-- redis:new() -> red. The fields exist from the start (as false) so that
-- reading them never falls through to the lazy command generator.
function _M.new(self, opts)
    if self ~= nil and self ~= _M and opts == nil and type(self) == "table" then
        return new_client(self)   -- redis.new(opts): the native client
    end
    return setmetatable({
        _rt = false,          -- runtime (go-redis pool) chosen by connect()
        _conn = false,        -- dedicated connection while MULTI / WATCH is open
        _reqs = false,        -- pipeline: flat command list
        _nreqs = 0,           -- pipeline: number of values in _reqs
        _sub = false,         -- pub/sub handle
        _subscribed = false,
        _timeout = DEFAULT_TIMEOUT,
        _ctimeout = false,    -- connect timeout (set_timeouts)
        _in_multi = false,    -- MULTI sent on _conn, EXEC / DISCARD not yet
    }, mt)
end

local function check_ms(v, i, name)
    if type(v) ~= "number" or v < 0 or v ~= v then
        error("bad argument #" .. i .. " (" .. name .. ") to 'set_timeout': a non-negative"
              .. " number of milliseconds expected, got " .. tostring(v), 3)
    end
end

function _M.set_timeout(self, timeout)
    check_ms(timeout, 1, "timeout")
    self._timeout = timeout
    self._ctimeout = false
end

-- set_timeouts(connect, send, read): one deadline covers a command's
-- send and read here, so commands take the larger of the two.
function _M.set_timeouts(self, connect_timeout, send_timeout, read_timeout)
    check_ms(connect_timeout, 1, "connect_timeout")
    check_ms(send_timeout, 2, "send_timeout")
    check_ms(read_timeout, 3, "read_timeout")
    self._ctimeout = connect_timeout
    self._timeout = send_timeout > read_timeout and send_timeout or read_timeout
end

local function release(self)
    local conn, sub = self._conn, self._sub
    if conn then
        self._conn = false
        conn:close()
    end
    if sub then
        self._sub = false
        sub:close()
    end
    self._subscribed = false
end

-- connect(host, port, opts) or connect("unix:/path", opts). opts takes
-- lua-resty-redis's (ssl, ssl_verify, server_name; pool and backlog are
-- accepted and ignored) and any option of redis.new().
function _M.connect(self, host, port, opts)
    if type(host) ~= "string" then
        error("bad argument #1 (host) to 'connect': a string expected, got " .. type(host), 2)
    end
    if type(port) == "table" then
        port, opts = nil, port
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("bad argument #3 (opts) to 'connect': a table expected, got " .. type(opts), 2)
    end
    release(self)
    self._reqs = false
    local rt, err = runtime_for(host, port, opts)
    if not rt then
        self._rt = false
        return nil, err
    end
    local ok
    ok, err = check(rt, self._ctimeout or self._timeout)
    if not ok then
        self._rt = false
        return nil, err
    end
    self._rt = rt
    return 1
end

-- set_keepalive(): the pool is go-redis's, so there is nothing to give
-- back; the object is disconnected as with a cosocket. Returns 1.
function _M.set_keepalive(self)
    if self._subscribed then
        return nil, "subscribed state"
    end
    if not self._rt then
        return nil, "closed"
    end
    release(self)
    self._rt = false
    return 1
end

-- Connections are pooled in Go; code that checks this to decide whether
-- to AUTH / SELECT should always do it, so it is always 0.
function _M.get_reused_times(self)
    if not self._rt then
        return nil, "closed"
    end
    return 0
end

function _M.close(self)
    if not self._rt then
        return nil, "closed"
    end
    release(self)
    self._rt = false
    return 1
end

-- queue a command of a pipeline: count, name, args...
local function queue(self, reqs, cmd, ...)
    local n = select("#", ...)
    local i = self._nreqs
    reqs[i + 1] = n + 1
    reqs[i + 2] = cmd
    for j = 1, n do
        local v = select(j, ...)
        if v == nil then
            v = ""
        end
        reqs[i + 2 + j] = v
    end
    self._nreqs = i + 2 + n
end

local function target(self)
    return self._conn or self._rt
end

-- do_cmd: the lua-resty-redis contract: reply; false, msg for an error
-- reply; nil, err for a failure.
local function do_cmd(self, cmd, ...)
    local reqs = self._reqs
    if reqs then
        return queue(self, reqs, cmd, ...)
    end
    local t = self._conn or self._rt
    if not t then
        return nil, "closed"
    end
    local res, err, detail = call_timeout(t, self._timeout, cmd, ...)
    if res ~= nil then
        return res
    end
    if detail then
        return false, err
    end
    failed(self._rt, err)
    return nil, err
end

local function gen_cmd(cmd)
    return function(self, ...)
        return do_cmd(self, cmd, ...)
    end
end

-- hmset(key, {field = value, ...}) or hmset(key, field, value, ...)
function _M.hmset(self, key, ...)
    if select("#", ...) == 1 and type((...)) == "table" then
        local t = ...
        local n = 0
        for _ in pairs(t) do
            n = n + 2
        end
        local flat = new_tab(n, 0)
        local i = 0
        for k, v in pairs(t) do
            flat[i + 1], flat[i + 2] = k, v
            i = i + 2
        end
        return do_cmd(self, "hmset", key, unpack(flat, 1, n))
    end
    return do_cmd(self, "hmset", key, ...)
end

-- MULTI and WATCH bind state to one connection: they take a dedicated
-- connection from the pool, kept until EXEC / DISCARD / UNWATCH (or
-- set_keepalive / close, which discard what is left open).
local function pin(self)
    if self._conn then
        return true
    end
    local rt = self._rt
    if not rt then
        return nil, "closed"
    end
    local conn, err = call_timeout(rt, self._timeout, ".conn")
    if not conn then
        failed(rt, err)
        return nil, err
    end
    self._conn = conn
    self._in_multi = false
    return true
end

local function unpin(self)
    local conn = self._conn
    if conn then
        self._conn = false
        conn:close()
    end
end

for _, cmd in pairs({ "multi", "watch" }) do
    _M[cmd] = function(self, ...)
        if self._reqs then
            return queue(self, self._reqs, cmd, ...)
        end
        local ok, err = pin(self)
        if not ok then
            return nil, err
        end
        if cmd == "multi" then
            self._in_multi = true
        end
        return do_cmd(self, cmd, ...)
    end
end

for _, cmd in pairs({ "exec", "discard", "unwatch" }) do
    _M[cmd] = function(self, ...)
        if self._reqs or not self._conn then
            return do_cmd(self, cmd, ...)
        end
        local res, err = do_cmd(self, cmd, ...)
        if cmd ~= "unwatch" or not self._in_multi then
            self._in_multi = false
            unpin(self)
        end
        if res then
            return res
        end
        return res, err
    end
end

-- use_runtime switches the client to nrt, a runtime derived with another
-- password or database, after one PING on its first use; a Redis error
-- reply (WRONGPASS, ...) comes back as false, err, as lua-resty-redis
-- returns it.
local function use_runtime(self, nrt)
    if not healthy[nrt] then
        local res, err, detail = call_timeout(nrt, self._timeout, ".ping")
        if not res then
            if detail then
                return false, err
            end
            return nil, err
        end
        healthy[nrt] = true
    end
    self._rt = nrt
    return "OK"
end

-- auth(password) / auth(username, password): connections come from a
-- pool, so the credentials go into the pool's configuration (each new
-- connection authenticates) and are checked now.
function _M.auth(self, user, password)
    if password == nil then
        user, password = nil, user
    end
    if self._conn or self._reqs then
        if user then
            return do_cmd(self, "auth", user, password)
        end
        return do_cmd(self, "auth", password)
    end
    local rt = self._rt
    if not rt then
        return nil, "closed"
    end
    local nrt, err = derive(rt, "password", password, "username", user)
    if not nrt then
        return nil, err
    end
    return use_runtime(self, nrt)
end

-- select(db): likewise, the database goes into the pool's configuration.
function _M.select(self, db)
    if self._conn or self._reqs then
        return do_cmd(self, "select", db)
    end
    local rt = self._rt
    if not rt then
        return nil, "closed"
    end
    local n = tonumber(db)
    if not n or n ~= n or n < 0 or n % 1 ~= 0 then
        return false, "ERR value is not an integer or out of range"
    end
    if n == (configs[rt] and configs[rt].db or 0) then
        return "OK"
    end
    local nrt, err = derive(rt, "db", n)
    if not nrt then
        return nil, err
    end
    return use_runtime(self, nrt)
end

function _M.init_pipeline(self, n)
    self._reqs = new_tab((n or 4) * 3, 0)
    self._nreqs = 0
end

function _M.cancel_pipeline(self)
    self._reqs = false
    self._nreqs = 0
end

-- commit_pipeline(): every queued command in one call (one round trip);
-- replies in order, error replies as {false, msg}.
function _M.commit_pipeline(self)
    local reqs = self._reqs
    if not reqs then
        return nil, "no pipeline"
    end
    self._reqs = false
    local t = self._conn or self._rt
    if not t then
        return nil, "closed"
    end
    if self._nreqs == 0 then
        return {}
    end
    local res, err = call_timeout(t, self._timeout, ".pipe", reqs)
    if not res then
        failed(self._rt, err)
        return nil, err
    end
    return res
end

local function check_unsubscribed(self, res)
    if type(res) == "table" and (res[1] == "unsubscribe" or res[1] == "punsubscribe")
       and res[3] == 0
    then
        self._subscribed = false
    end
end

for _, cmd in pairs({ "subscribe", "psubscribe" }) do
    _M[cmd] = function(self, ...)
        local rt = self._rt
        if not rt then
            return nil, "closed"
        end
        local sub = self._sub
        if not sub then
            local err
            sub, err = call_timeout(rt, self._timeout, ".sub", cmd, ...)
            if not sub then
                failed(rt, err)
                return nil, err
            end
            self._sub = sub
            self._subscribed = true
            return call_timeout(sub, self._timeout, "read")
        end
        self._subscribed = true
        return call_timeout(sub, self._timeout, cmd, ...)
    end
end

for _, cmd in pairs({ "unsubscribe", "punsubscribe" }) do
    _M[cmd] = function(self, ...)
        if not self._rt then
            return nil, "closed"
        end
        local sub = self._sub
        if not sub then
            -- what Redis answers on a connection that subscribed to nothing
            local name = ...
            return { cmd, name == nil and null or name, 0 }
        end
        local res, err = call_timeout(sub, self._timeout, cmd, ...)
        check_unsubscribed(self, res)
        return res, err
    end
end

-- read_reply(): the next pub/sub reply; nil, "timeout" keeps the
-- subscription, as lua-resty-redis does.
function _M.read_reply(self)
    if not self._rt then
        return nil, "closed"
    end
    if not self._subscribed then
        return nil, "not subscribed"
    end
    local res, err = call_timeout(self._sub, self._timeout, "read")
    check_unsubscribed(self, res)
    return res, err
end

function _M.array_to_hash(self, t)
    local n = #t
    local h = new_tab(0, n / 2)
    for i = 1, n, 2 do
        h[t[i]] = t[i + 1]
    end
    return h
end

-- add_commands(...): kept for old code; methods are generated on use.
function _M.add_commands(...)
    local cmds = { ... }
    for i = 1, #cmds do
        local cmd = cmds[i]
        if not _M[cmd] then
            _M[cmd] = gen_cmd(cmd)
        end
    end
end

---------------------------------------------------------------- native

local client = new_tab(0, 16)
local client_mt = { __index = client }
local lua_only = { timeout = true }

-- redis.new(opts): a native client. opts are the Go
-- runtime's options (see docs/redis.md) plus timeout (ms, per call).
new_client = function(opts)
    if type(opts) ~= "table" then
        error("bad argument #1 (opts) to 'resty.ffi.redis.new': a table expected, got "
              .. type(opts), 2)
    end
    local timeout = opts.timeout or DEFAULT_TIMEOUT
    if type(timeout) ~= "number" or timeout < 0 then
        error("bad option 'timeout' to 'resty.ffi.redis.new': a non-negative number of"
              .. " milliseconds expected, got " .. tostring(timeout), 2)
    end
    local go_opts = opts
    if opts.timeout ~= nil then
        go_opts = {}
        for k, v in pairs(opts) do
            if not lua_only[k] then
                go_opts[k] = v
            end
        end
    end
    local rt, err = open(go_opts)
    if not rt then
        return nil, err
    end
    return setmetatable({ _rt = rt, _timeout = timeout }, client_mt)
end

function client.set_timeout(self, timeout)
    check_ms(timeout, 1, "timeout")
    self._timeout = timeout
end

local function native_gen(cmd)
    return function(self, ...)
        local res, err = call_timeout(self._rt, self._timeout, cmd, ...)
        if res ~= nil then
            return res
        end
        return nil, err
    end
end

-- cli:command(name, ...) -> reply, or nil, err (error replies included)
function client.command(self, cmd, ...)
    if type(cmd) ~= "string" then
        error("bad argument #1 (command) to 'command': a string expected, got " .. type(cmd), 2)
    end
    local res, err = call_timeout(self._rt, self._timeout, cmd, ...)
    if res ~= nil then
        return res
    end
    return nil, err
end
client["do"] = client.command

-- A recorder for pipeline() / transaction(): p:get(k), p:command(...).
local recorder = {}
local recorder_mt = { __index = recorder }

function recorder.command(p, cmd, ...)
    if type(cmd) ~= "string" then
        error("bad argument #1 (command) to 'command': a string expected, got " .. type(cmd), 2)
    end
    queue(p, p._reqs, cmd, ...)
end
recorder["do"] = recorder.command

setmetatable(recorder, { __index = function(t, cmd)
    local f = function(p, ...) return queue(p, p._reqs, cmd, ...) end
    t[cmd] = f
    return f
end })

local function batch(self, op, fn, what)
    if type(fn) ~= "function" then
        error("bad argument #1 (fn) to '" .. what .. "': a function expected, got " .. type(fn), 3)
    end
    local p = setmetatable({ _reqs = new_tab(16, 0), _nreqs = 0 }, recorder_mt)
    fn(p)
    if p._nreqs == 0 then
        return {}
    end
    return call_timeout(self._rt, self._timeout, op, p._reqs)
end

-- cli:pipeline(function(p) p:set(...); p:get(...) end) -> replies, with
-- error replies as {false, msg}; nil, err when the pipeline failed.
function client.pipeline(self, fn)
    return batch(self, ".pipe", fn, "pipeline")
end

-- cli:transaction(fn): the same inside MULTI / EXEC.
function client.transaction(self, fn)
    return batch(self, ".tx", fn, "transaction")
end

local function subscribe(self, kind, names)
    if type(names) == "string" then
        return call_timeout(self._rt, self._timeout, ".sub", kind, names)
    end
    if type(names) ~= "table" or #names == 0 then
        error("bad argument #1 (channels) to '" .. kind .. "': a string or a non-empty"
              .. " list expected, got " .. type(names), 3)
    end
    return call_timeout(self._rt, self._timeout, ".sub", kind, unpack(names))
end

-- cli:subscribe(channels) -> handle: h:recv(timeout_ms) returns
-- {channel=, payload=} (or nil, "timeout"), h:close() unsubscribes.
function client.subscribe(self, channels)
    return subscribe(self, "subscribe", channels)
end

-- cli:psubscribe(patterns): likewise; messages carry pattern= too.
function client.psubscribe(self, patterns)
    return subscribe(self, "psubscribe", patterns)
end

-- cli:pool_stats() -> go-redis pool counters
function client.pool_stats(self)
    return call_timeout(self._rt, self._timeout, ".stats")
end

setmetatable(client, { __index = function(t, cmd)
    if type(cmd) ~= "string" or str_find(cmd, "^_") then
        return nil
    end
    local f = native_gen(cmd)
    t[cmd] = f
    return f
end })

---------------------------------------------------------------- lazy commands

-- red:anything(...) sends ANYTHING: methods are made on first use and
-- kept in the module table, as lua-resty-redis does.
setmetatable(_M, { __index = function(t, cmd)
    if type(cmd) ~= "string" or str_find(cmd, "^_") then
        return nil
    end
    local f = gen_cmd(cmd)
    t[cmd] = f
    return f
end })

return _M
