-- resty.ffi.postgres: PostgreSQL for OpenResty through pgx/v5 running in
-- the worker (see docs/postgres.md).
--
--   local pg = require "resty.ffi.postgres"
--   local db = pg.new{ dsn = "postgres://app:secret@127.0.0.1/app" }
--   local rows, err, detail = db:query("SELECT id, name FROM t WHERE id = $1", 42)
--
-- Go replies with [names, types, rows, command tag, affected], the rows
-- already keyed by column name (a Records value, see core/codec.go); this
-- file adds .columns, .command and .affected.

local rffi = require "resty.ffi"

local type = type
local pairs = pairs
local ipairs = ipairs
local error = error
local pcall = pcall
local select = select
local tostring = tostring
local setmetatable = setmetatable
local str_gsub = string.gsub
local str_find = string.find
local ngx_null = ngx.null
local call_timeout = rffi.call_timeout
local close = rffi.close

local ok, new_tab = pcall(require, "table.new")
if not ok then
    new_tab = function() return {} end
end

local _M = { _VERSION = "0.1.0", null = ngx_null }

local DEFAULT_TIMEOUT = 30000

-- options handled here, not by the Go runtime
local lua_options = { timeout = true }

---------------------------------------------------------------- results

-- shape(res): the rows of one Go result (already keyed by column name),
-- with .columns ({name=, type=} per column), .command and .affected.
local function shape(res)
    local names, types, rows = res[1], res[2], res[3]
    local ncols = #names
    local columns = new_tab(ncols, 0)
    for j = 1, ncols do
        columns[j] = { name = names[j], type = types[j] }
    end
    rows.columns = columns
    rows.command = res[4]
    rows.affected = res[5]
    return rows
end
_M.shape = shape

-- check_sql: a wrong sql type is the caller's error; level counts from
-- here to the user's code (3: called by the method itself).
local function check_sql(self, sql, fname, level)
    if self.done then
        return nil, "transaction is finished (" .. self.done .. ")"
    end
    if type(sql) ~= "string" then
        error("resty.ffi.postgres: " .. fname .. ": argument #1 (sql) must be a string, got "
              .. type(sql), level or 3)
    end
    return true
end

---------------------------------------------------------------- db

local db_mt = {}
db_mt.__index = db_mt

local tx_mt = {}
tx_mt.__index = tx_mt

local listener_mt = {}
listener_mt.__index = listener_mt

local dbs = setmetatable({}, { __mode = "k" }) -- opts table -> db

-- pg.new(opts) -> db, or nil, err. Every db made from equal options shares
-- one Go runtime and one pool in this worker.
function _M.new(opts)
    if type(opts) ~= "table" then
        error("resty.ffi.postgres.new: argument #1 (opts) must be a table, got " .. type(opts), 2)
    end
    local db = dbs[opts]
    if db then
        return db
    end
    local go_opts = {}
    for k, v in pairs(opts) do
        if not lua_options[k] then
            go_opts[k] = v
        end
    end
    local timeout = opts.timeout or DEFAULT_TIMEOUT
    if type(timeout) ~= "number" or timeout <= 0 then
        error("resty.ffi.postgres.new: opts.timeout must be a positive number of milliseconds", 2)
    end
    local rt, err = rffi.open("postgres", go_opts)
    if not rt then
        return nil, err
    end
    db = setmetatable({ rt = rt, timeout = timeout, prepared = {} }, db_mt)
    dbs[opts] = db
    return db
end

-- the calls shared by db and tx: self.rt is a runtime or a transaction handle

-- run_sql checks sql and calls op: res, or nil, err [, detail].
local function run_sql(self, fname, op, sql, ...)
    local ok, dne = check_sql(self, sql, fname, 4)
    if not ok then
        return nil, dne
    end
    return call_timeout(self.rt, self.timeout, op, sql, ...)
end

-- on_result(fn, res, ...): fn(res) for a result; the failure as it came
-- (nil, err [, detail]) otherwise.
local function on_result(fn, res, ...)
    if not res then
        return nil, ...
    end
    return fn(res)
end

-- one_row(res): the first row of a query_array result keyed by column
-- name, or nil when there is none.
local function one_row(res)
    local r = res[3][1]
    if not r then
        return nil
    end
    local names = res[1]
    local t = new_tab(0, #names)
    for j = 1, #names do
        t[names[j]] = r[j]
    end
    return t
end

local function first_value(res)
    local r = res[3][1]
    if not r then
        return nil
    end
    return r[1]
end

-- nil in second place: `local n, err = db:exec(...)` stays the idiom
local function affected(res)
    return res[5], nil, res[4]
end

local function shape_each(res)
    for i = 1, #res do
        res[i] = shape(res[i])
    end
    return res
end

local function query(self, sql, ...)
    return on_result(shape, run_sql(self, "query", "query", sql, ...))
end

local function query_one(self, sql, ...)
    return on_result(one_row, run_sql(self, "query_one", "query_array", sql, ...))
end

local function query_value(self, sql, ...)
    return on_result(first_value, run_sql(self, "query_value", "query_array", sql, ...))
end

local function exec(self, sql, ...)
    return on_result(affected, run_sql(self, "exec", "query_array", sql, ...))
end

local function execute(self, name, ...)
    if type(name) ~= "string" then
        error("resty.ffi.postgres: execute: argument #1 (name) must be a string, got " .. type(name), 2)
    end
    return on_result(shape, call_timeout(self.rt, self.timeout, "execute", name, ...))
end

local function simple_query(self, sql)
    return on_result(shape_each, run_sql(self, "simple_query", "simple", sql))
end

local function batch(self, list)
    if type(list) ~= "table" then
        error("resty.ffi.postgres: batch: argument #1 must be a table of {sql, args...}", 2)
    end
    for i = 1, #list do
        if type(list[i]) ~= "table" or type(list[i][1]) ~= "string" then
            error("resty.ffi.postgres: batch: item " .. i .. " must be {sql, args...}", 2)
        end
        -- keep trailing NULL arguments: Lua nils cannot be in the table
    end
    return on_result(shape_each, call_timeout(self.rt, self.timeout, "batch", list))
end

local function copy_from(self, tbl, columns, rows)
    if type(tbl) ~= "string" then
        error("resty.ffi.postgres: copy_from: argument #1 (table) must be a string", 2)
    end
    if type(columns) ~= "table" then
        error("resty.ffi.postgres: copy_from: argument #2 (columns) must be a table", 2)
    end
    if type(rows) ~= "table" then
        error("resty.ffi.postgres: copy_from: argument #3 (rows) must be a table", 2)
    end
    return call_timeout(self.rt, self.timeout, "copy_from", tbl, columns, rows)
end

for _, mt in ipairs({ db_mt, tx_mt }) do
    mt.query = query
    mt.query_one = query_one
    mt.query_value = query_value
    mt.exec = exec
    mt.execute = execute
    mt.simple_query = simple_query
    mt.batch = batch
    mt.copy_from = copy_from
end

-- db:prepare(name, sql) -> true, or nil, err. Idempotent; the statement is
-- prepared on each connection the first time that connection runs it.
function db_mt.prepare(self, name, sql)
    if type(name) ~= "string" then
        error("resty.ffi.postgres: prepare: argument #1 (name) must be a string, got " .. type(name), 2)
    end
    check_sql(self, sql, "prepare")
    if self.prepared[name] == sql then
        return true
    end
    local res, err, detail = call_timeout(self.rt, self.timeout, "prepare", name, sql)
    if not res then
        return nil, err, detail
    end
    self.prepared[name] = sql
    return true
end

-- db:notify(channel, payload) -> true, or nil, err
function db_mt.notify(self, channel, payload)
    if type(channel) ~= "string" then
        error("resty.ffi.postgres: notify: argument #1 (channel) must be a string", 2)
    end
    return call_timeout(self.rt, self.timeout, "notify", channel, payload)
end

-- db:stats() -> pool counters
function db_mt.stats(self)
    return call_timeout(self.rt, self.timeout, "stats")
end

---------------------------------------------------------------- transactions

-- db:begin(opts) -> tx, or nil, err. opts: isolation ("serializable",
-- "repeatable read", "read committed"), read_only, deferrable.
function db_mt.begin(self, opts)
    if opts ~= nil and type(opts) ~= "table" then
        error("resty.ffi.postgres: begin: argument #1 (opts) must be a table or nil", 2)
    end
    local h, err, detail = call_timeout(self.rt, self.timeout, "begin", opts)
    if not h then
        return nil, err, detail
    end
    return setmetatable({ rt = h, timeout = self.timeout, db = self }, tx_mt)
end

local function finish(self, op)
    if self.done then
        return nil, "transaction is finished (" .. self.done .. ")"
    end
    local res, err, detail = call_timeout(self.rt, self.timeout, op)
    -- whatever happened, the Go side has released the connection
    self.done = op == "commit" and "committed" or "rolled back"
    if not res and err == "timeout" then
        self.done = "rolled back"
    end
    close(self.rt)
    if not res then
        return nil, err, detail
    end
    return true
end

function tx_mt.commit(self) return finish(self, "commit") end
function tx_mt.rollback(self) return finish(self, "rollback") end

-- db:transaction(fn, opts) -> fn's first result (or true), or nil, err.
-- Commits when fn returns, rolls back when it raises an error or returns
-- nil, err.
function db_mt.transaction(self, fn, opts)
    if type(fn) ~= "function" then
        error("resty.ffi.postgres: transaction: argument #1 must be a function", 2)
    end
    local tx, err, detail = self:begin(opts)
    if not tx then
        return nil, err, detail
    end
    local pok, res, ferr, fdetail = pcall(fn, tx)
    if not pok then
        tx:rollback()
        return nil, tostring(res)
    end
    if res == nil and ferr ~= nil then
        tx:rollback()
        return nil, ferr, fdetail
    end
    if tx.done then
        return res == nil and true or res
    end
    local cok, cerr, cdetail = tx:commit()
    if not cok then
        return nil, cerr, cdetail
    end
    if res == nil then
        return true
    end
    return res
end

---------------------------------------------------------------- LISTEN

-- db:listen(channel, ...) -> listener, or nil, err
function db_mt.listen(self, ...)
    local n = select("#", ...)
    if n == 0 then
        error("resty.ffi.postgres: listen: at least one channel expected", 2)
    end
    for i = 1, n do
        if type(select(i, ...)) ~= "string" then
            error("resty.ffi.postgres: listen: argument #" .. i .. " (channel) must be a string", 2)
        end
    end
    local h, err, detail = call_timeout(self.rt, self.timeout, "listen", ...)
    if not h then
        return nil, err, detail
    end
    return setmetatable({ h = h, timeout = self.timeout }, listener_mt)
end

-- l:recv(timeout_ms) -> {channel=, payload=, pid=}, or nil, "timeout", or
-- nil, err (once after the connection was lost; later calls reconnect)
function listener_mt.recv(self, timeout)
    return call_timeout(self.h, timeout or self.timeout, "recv")
end

function listener_mt.listen(self, ...)
    return call_timeout(self.h, self.timeout, "listen", ...)
end

function listener_mt.unlisten(self, ...)
    return call_timeout(self.h, self.timeout, "unlisten", ...)
end

function listener_mt.close(self)
    return close(self.h)
end

---------------------------------------------------------------- pgmoon

-- A pgmoon-compatible surface: pg.pgmoon.new(cfg) with connect, query,
-- escape_literal, escape_identifier, keepalive, disconnect, settimeout.
local pgmoon = { NULL = ngx_null }
local pgmoon_mt = {}
pgmoon_mt.__index = pgmoon_mt
_M.pgmoon = pgmoon

local function escape_identifier(_, ident)
    return '"' .. str_gsub(tostring(ident), '"', '""') .. '"'
end

local function escape_literal(_, val)
    local t = type(val)
    if t == "number" then
        return tostring(val)
    elseif t == "string" then
        return "'" .. str_gsub(val, "'", "''") .. "'"
    elseif t == "boolean" then
        return val and "TRUE" or "FALSE"
    elseif val == nil or val == ngx_null then
        return "NULL"
    end
    error("resty.ffi.postgres: escape_literal: don't know how to escape a " .. t, 2)
end

pgmoon_mt.escape_identifier = escape_identifier
pgmoon_mt.escape_literal = escape_literal
_M.escape_identifier = function(ident) return escape_identifier(nil, ident) end
_M.escape_literal = function(val) return escape_literal(nil, val) end

-- pgmoon.new(cfg): cfg as pgmoon's (host, port, database, user, password,
-- ssl, ssl_verify, ssl_required, application_name, pool_size) plus this
-- module's options.
function pgmoon.new(cfg)
    if type(cfg) ~= "table" then
        error("resty.ffi.postgres.pgmoon.new: argument #1 (cfg) must be a table", 2)
    end
    local opts = {}
    for k, v in pairs(cfg) do
        if k == "ssl" or k == "ssl_verify" or k == "ssl_required" or k == "pool_size"
           or k == "socket_type" or k == "pool" or k == "backlog" or k == "convert_null"
        then -- translated below
        else
            opts[k] = v
        end
    end
    opts.host = opts.host or "127.0.0.1"
    opts.port = opts.port or 5432
    opts.database = opts.database or "postgres"
    opts.user = opts.user or "postgres"
    if cfg.pool_size then
        opts.max_conns = cfg.pool_size
    end
    -- pgmoon verifies only when asked (ssl_verify = true); here every TLS
    -- connection is verified unless ssl_verify is false (docs/postgres.md)
    if cfg.ssl_verify == false then
        opts.ssl_verify = false
    end
    if not opts.sslmode then
        if cfg.ssl then
            if cfg.ssl_verify then
                opts.sslmode = "verify-full"
            elseif cfg.ssl_required then
                opts.sslmode = "require"
            else
                opts.sslmode = "prefer"
            end
        else
            opts.sslmode = "disable"
        end
    end
    return setmetatable({ opts = opts, convert_null = cfg.convert_null,
                          timeout = cfg.timeout or DEFAULT_TIMEOUT }, pgmoon_mt)
end

function pgmoon_mt.settimeout(self, ms)
    self.timeout = ms
    if self.db then
        self.db = setmetatable({ rt = self.db.rt, timeout = ms, prepared = self.db.prepared }, db_mt)
    end
end

-- connect() -> true, or nil, err. Checks that a pooled connection works.
function pgmoon_mt.connect(self)
    local db, err = _M.new(self.opts)
    if not db then
        return nil, err
    end
    db = setmetatable({ rt = db.rt, timeout = self.timeout, prepared = db.prepared }, db_mt)
    local res
    res, err = call_timeout(db.rt, self.timeout, "ping")
    if not res then
        return nil, err
    end
    self.db = db
    return true
end

-- keepalive()/disconnect(): connections live in the worker's Go pool.
function pgmoon_mt.keepalive(self)
    self.db = nil
    return true
end

function pgmoon_mt.disconnect(self)
    self.db = nil
    return true
end

local function pgmoon_result(self, res)
    local names, rows = res[1], res[3]
    if #names == 0 then
        return { affected_rows = res[5] }
    end
    if not self.convert_null then
        -- pgmoon leaves NULL columns out of the row
        for i = 1, #rows do
            local r = rows[i]
            for j = 1, #names do
                local k = names[j]
                if r[k] == ngx_null then
                    r[k] = nil
                end
            end
        end
    end
    local tag = res[4]
    if not str_find(tag, "^SELECT") then
        rows.affected_rows = res[5]
    end
    return setmetatable(rows, nil)
end

-- query(sql) -> result, num_queries; or nil, err, partial, num_queries.
-- Runs with the simple protocol, so sql may hold several statements.
function pgmoon_mt.query(self, sql, ...)
    if select("#", ...) > 0 then
        error("resty.ffi.postgres.pgmoon: query: use escape_literal, or the db API for $n parameters", 2)
    end
    local ok, dne = check_sql(self, sql, "query")
    if not ok then
        return nil, dne
    end
    local db = self.db
    if not db then
        return nil, "not connected"
    end
    local res, err = call_timeout(db.rt, self.timeout, "simple", sql)
    if not res then
        return nil, err, nil, 0
    end
    local n = #res
    if n == 1 then
        return pgmoon_result(self, res[1]), 1
    end
    for i = 1, n do
        res[i] = pgmoon_result(self, res[i])
    end
    return setmetatable(res, nil), n
end

return _M
