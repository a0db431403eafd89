-- resty.ffi: call Go code running on goroutines inside this nginx worker.
--
-- The call path (docs/ARCHITECTURE.md tells it with file names):
--   obj:call(op, ...) encodes the arguments (resty.ffi.codec), submits them
--   with rffi_submit (Go copies them and starts a goroutine; never blocks),
--   then waits on an ngx.semaphore. The dispatcher, one light thread per
--   worker started from a timer, sleeps on the doorbell socket; when Go
--   rings it, it drains every completion with one rffi_drain call, decodes
--   each result, frees its C buffer and posts the waiter's semaphore.

local ffi = require "ffi"
local codec = require "resty.ffi.codec"
local semaphore = require "ngx.semaphore"

local C = ffi.C
local ffi_new = ffi.new
local ffi_string = ffi.string
local ffi_gc = ffi.gc
local tonumber = tonumber
local type = type
local select = select
local error = error
local pairs = pairs
local setmetatable = setmetatable
local getmetatable = getmetatable
local tostring = tostring
local pcall = pcall
local encode_args = codec.encode_args
local encode_few = codec.encode_few
local encode = codec.encode
local decode = codec.decode
local ngx = ngx
local ngx_log = ngx.log
local ngx_ERR = ngx.ERR
local ngx_WARN = ngx.WARN
local ngx_now = ngx.now
local ngx_sleep = ngx.sleep
local get_phase = ngx.get_phase
local worker_exiting = ngx.worker.exiting
local timer_at = ngx.timer.at
local sema_new = semaphore.new

ffi.cdef [[
typedef struct {
    uint64_t ticket;
    uint64_t object;
    int32_t  kind;
    int32_t  timeout_ms;
    uint32_t op_len;
    uint32_t pad;
    char    *data;
    size_t   len;
} rffi_task_t;

typedef struct {
    uint64_t ticket;
    int32_t  status;
    int32_t  level;
    char    *data;
    size_t   len;
} rffi_completion_t;

typedef struct {
    uint64_t sq_tail;
    char     pad0[56];
    uint64_t sq_head;
    int32_t  pump_parked;
    int32_t  wake_fd;
    char     pad1[48];
    uint64_t cq_tail;
    int32_t  armed;
    int32_t  pad2;
    char     pad3[48];
    uint64_t cq_head;
    uint64_t cq_taken;
    uint64_t sq_freed;
    void    *spare_blocks;
    uint32_t spare_count;
    uint32_t pad5;
    char     pad4[24];
    int64_t  in_flight;
    int64_t  max_in_flight;
    int64_t  max_payload;
    int32_t  closing;
    uint32_t sq_mask;
    uint32_t cq_mask;
    int32_t  pad6;
    rffi_task_t       *sq;
    rffi_completion_t *cq;
} rffi_shared_t;

int64_t rffi_push(rffi_shared_t *s, int32_t kind, uint64_t ticket, uint64_t object,
                  const char *op, size_t op_len, const char *args, size_t args_len,
                  int32_t timeout_ms);
int     rffi_pop_completions(rffi_shared_t *s, rffi_completion_t *out, int max);
int     rffi_done_completions(rffi_shared_t *s);

rffi_shared_t *rffi_init(const char *cfg, size_t cfg_len, char *err, size_t err_len);
int     rffi_attach(const void *token, char *err, size_t err_len);
int     rffi_listen(char *path, size_t path_len, char *err, size_t err_len);
int64_t rffi_open(const char *name, size_t name_len, const char *opts, size_t opts_len,
                  char *err, size_t err_len);
int     rffi_cancel(uint64_t ticket);
int     rffi_close(uint64_t handle);
int     rffi_stats(char **out, size_t *out_len);
void    rffi_wake(void);
int     rffi_shutdown(int32_t timeout_ms, char *err, size_t err_len);
void    rffi_sigprof_before_start(void);
int     rffi_sigprof_after_start(void);
void    free(void *p);
]]

-- The scheduling policy of a thread (pid 0: the calling one). Declared
-- with a struct of our own, as another module may declare sched_param.
local sched_ok = pcall(ffi.cdef, [[
struct rffi_sched_param { int sched_priority; };
int sched_getscheduler(int pid);
int sched_setscheduler(int pid, int policy, const struct rffi_sched_param *param);
]])

local _M = { _VERSION = "0.1.0" }

local STATUS_OK, STATUS_ERROR, STATUS_LOG = 0, 1, 2
-- submission kinds and outcomes (core/rffi.h)
local KIND_CALL, KIND_SUBMIT, KIND_CANCEL, KIND_CLOSE = 0, 1, 2, 3
local BATCH = 256
local submit_errors = {
    [-1] = "busy",
    [-2] = "closing",
    [-4] = "payload too large",
    [-6] = "out of memory",
}

-- Phases where a light thread cannot yield, so a call cannot wait.
local no_wait_phases = {
    init = true, init_worker = true, set = true, header_filter = true,
    body_filter = true, log = true, balancer = true, exit_worker = true,
    ssl_session_store = true,
}

local config = {
    path = nil,              -- explicit path of resty_ffi_go.so
    call_timeout = 60000,    -- ms, for calls that give none
    shutdown_timeout = 5000, -- ms, for flushing runtimes at worker exit
    max_in_flight = nil,     -- Go's default (16384)
    max_payload = nil,       -- Go's default (64 MiB)
    socket_dir = nil,        -- Go's default (os.TempDir())
    go_sched_batch = true,   -- Go's threads never preempt the event loop on wake-up
}
local go_config_keys = {
    max_in_flight = true, max_payload = true, socket_dir = true,
    max_pending_logs = true, pump_spins = true, pump_spin_us = true, go_max_procs = true, go_gc_percent = true,
    shutdown_timeout = true, release_init_pages = true,
}

local lib            -- the loaded library (ffi.load), once per worker
local shared         -- rffi_shared_t *, written by the dispatcher
local load_err       -- why loading failed, so we fail fast afterwards
local closed = false -- set once the runtime has shut down
local err_buf = ffi_new("char[?]", 512)
-- an address unique to this Lua VM, for rffi_attach
local vm_token = ffi_new("char[1]")
local completions = ffi_new("rffi_completion_t[?]", BATCH)
local stats_out = ffi_new("char *[1]")
local stats_len = ffi_new("size_t[1]")

-- waiting[ticket] = waiter record of a coroutine blocked in call()
local waiting = {}
local waiting_count = 0
-- waiter records of finished calls, for reuse; counted here because
-- #spare_waiters is a function call (lj_tab_len) even in compiled code
local spare_waiters = {}
local spare_count = 0
local next_ticket = 1

-- push_control sends a cancel or close record; false when the ring is full.
local function push_control(kind, ticket, id)
    return lib.rffi_push(shared, kind, ticket, id, nil, 0, nil, 0, 0) >= 0
end

local function go_error(prefix)
    return prefix .. ffi_string(err_buf)
end

---------------------------------------------------------------- loading

-- configure(opts): set options before the library is loaded.
function _M.configure(opts)
    if type(opts) ~= "table" then
        error("resty.ffi.configure: argument #1 must be a table", 2)
    end
    for k, v in pairs(opts) do
        if config[k] == nil and not go_config_keys[k] and k ~= "path" then
            error("resty.ffi.configure: unknown option '" .. tostring(k) .. "'", 2)
        end
        if k == "go_sched_batch" and type(v) ~= "boolean" then
            error("resty.ffi.configure: 'go_sched_batch' must be a boolean, got " .. type(v), 2)
        end
        if lib and k ~= "call_timeout" and k ~= "shutdown_timeout" then
            error("resty.ffi.configure: '" .. k .. "' must be set before the library is loaded", 2)
        end
        config[k] = v
    end
    return true
end

local function find_library()
    if config.path then
        return config.path
    end
    local path = package.searchpath("resty_ffi_go", package.cpath)
    if not path then
        return nil, "resty.ffi: resty_ffi_go.so not found in package.cpath ("
                    .. package.cpath .. "); build it with `make build` and add its"
                    .. " directory to lua_package_cpath, or set"
                    .. " require('resty.ffi').configure{ path = '/path/to/resty_ffi_go.so' }"
    end
    return path
end

local start_dispatcher

-- Go's threads run under SCHED_BATCH: a batch thread that wakes up does
-- not preempt the thread running on its CPU, so the Go side no longer
-- interrupts the nginx event loop in the middle of its round; it runs
-- when the loop blocks, on another core, or at the scheduler's tick, and
-- a waking nginx thread still preempts it. Measured on the core bench:
-- the worker thread was preempted by its Go threads about 2,000 times a
-- second, waiting 47 us each time, and echo went 9% faster (docs/
-- ARCHITECTURE.md, "Threads").
--
-- A new thread inherits its creator's policy, and the library's threads
-- are created by the runtime it starts while it loads (and by each other
-- afterwards). So the worker thread takes SCHED_BATCH for the time of
-- ffi.load and rffi_init only, and then gets SCHED_OTHER back. Nothing
-- changes for a thread that runs under another policy (real-time, or
-- batch already): then the Go threads keep the worker's own.
local SCHED_OTHER, SCHED_BATCH = 0, 3
local sched_param = sched_ok and ffi_new("struct rffi_sched_param") or nil

-- enter_batch() -> true when the calling thread went from SCHED_OTHER to
-- SCHED_BATCH, and leave_batch() must undo it.
local function enter_batch()
    if not config.go_sched_batch or not sched_ok then
        return false
    end
    local C = ffi.C
    if C.sched_getscheduler(0) ~= SCHED_OTHER then
        return false
    end
    return C.sched_setscheduler(0, SCHED_BATCH, sched_param) == 0
end

local function leave_batch(entered)
    if entered and ffi.C.sched_setscheduler(0, SCHED_OTHER, sched_param) ~= 0 then
        ngx_log(ngx_ERR, "resty.ffi: cannot give the worker thread its scheduling"
                         .. " policy back (errno ", ffi.errno(), ")")
    end
end

-- LuaJIT's sampling profiler (jit.p) arms a process-wide CPU timer whose
-- SIGPROF can land on a Go thread, where its handler would run on a
-- goroutine's stack and kill the worker. Every start of it goes through
-- the library's guard, which keeps the samples of this thread only
-- (core/sigprof.c); a profiler already running is guarded at load.
local function guard_profiler()
    local ok, profile = pcall(require, "jit.profile")
    if not ok or type(profile) ~= "table" or type(profile.start) ~= "function" then
        return
    end
    local start = profile.start
    profile.start = function(...)
        lib.rffi_sigprof_before_start()
        start(...)
        lib.rffi_sigprof_after_start()
    end
    lib.rffi_sigprof_after_start()
end

-- load() loads the Go library in this worker and starts the dispatcher. It
-- runs on first use; calling it from init_worker_by_lua does it early.
function _M.load()
    if lib then
        return true
    end
    if load_err then
        return nil, load_err
    end
    local phase = get_phase()
    if phase == "init" then
        -- not remembered: the same code may load fine in the worker later
        return nil, "resty.ffi: cannot load the Go runtime in init_by_lua: it runs in"
                    .. " the nginx master, and Go's threads do not survive fork();"
                    .. " load it in init_worker_by_lua or on first use"
    end
    local path, err = find_library()
    if not path then
        return nil, err
    end
    local batch = enter_batch()
    local ok, loaded = pcall(ffi.load, path)
    if not ok then
        leave_batch(batch)
        load_err = "resty.ffi: cannot load " .. path .. ": " .. tostring(loaded)
        return nil, load_err
    end
    local go_cfg = {}
    for k in pairs(go_config_keys) do
        go_cfg[k] = config[k]
    end
    local p, n = encode(setmetatable(go_cfg, codec.map_mt))
    -- rffi_init starts goroutines, and so may start threads, from here
    local sh = loaded.rffi_init(p, n, err_buf, 512)
    leave_batch(batch)
    if sh == nil or loaded.rffi_attach(vm_token, err_buf, 512) ~= 0 then
        load_err = go_error("resty.ffi: ")
        return nil, load_err
    end
    lib, shared = loaded, sh
    guard_profiler()
    ok, err = start_dispatcher()
    if not ok then
        return nil, err
    end
    return true
end

---------------------------------------------------------------- objects

-- An object is a Go value Lua can call: a runtime from open(), or a handle
-- returned by a call (stream, transaction, ...).
local object_mt = {}
object_mt.__index = object_mt

local function push_close(id)
    if lib and not closed then
        if not push_control(KIND_CLOSE, 0, id) then
            lib.rffi_close(id) -- the ring is full: take the slow path
        end
    end
end

local function close_handle(anchor)
    push_close(anchor[0])
end

local function new_object(id, kind, owned)
    local obj = setmetatable({ id = id, kind = kind }, object_mt)
    if owned then
        -- a dropped handle is closed by the GC
        obj.anchor = ffi_gc(ffi_new("uint64_t[1]", id), close_handle)
    end
    return obj
end

-- One Lua owner per Go handle: a handle that comes back (an echo, a
-- result naming an existing object) gets the wrapper already alive.
local live_handles = setmetatable({}, { __mode = "v" })

codec.wrap_handle = function(id)
    local obj = live_handles[id]
    if not obj then
        obj = new_object(id, "handle", true)
        live_handles[id] = obj
    end
    return obj
end

codec.handle_id = function(v)
    if getmetatable(v) == object_mt then
        return v.id
    end
    return nil
end

local runtimes = {} -- "<name>\0<encoded options>" -> object
-- name -> object opened without options: the per-request open(name) then
-- costs one lookup instead of encoding an empty option table into a key
local runtimes_by_name = {}

-- open(name, opts): the runtime registered in Go under name, created from
-- opts once per worker and shared by every request that asks for the same.
function _M.open(name, opts)
    if type(name) ~= "string" then
        error("resty.ffi.open: argument #1 (name) must be a string, got " .. type(name), 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("resty.ffi.open: argument #2 (opts) must be a table or nil, got " .. type(opts), 2)
    end
    if opts == nil then
        local obj = runtimes_by_name[name]
        if obj then
            return obj
        end
    end
    local ok, err = _M.load()
    if not ok then
        return nil, err
    end
    -- sorted keys: equal option tables share one runtime, whatever order
    -- they were built in
    local p, n = codec.encode_sorted(opts or setmetatable({}, codec.map_mt))
    local key = name .. "\0" .. ffi_string(p, n)
    local obj = runtimes[key]
    if not obj then
        local id = lib.rffi_open(name, #name, p, n, err_buf, 512)
        if id < 0 then
            return nil, go_error("")
        end
        obj = new_object(tonumber(id), name, false)
        runtimes[key] = obj
    end
    if opts == nil then
        runtimes_by_name[name] = obj
    end
    return obj
end

-- check_object raises for a non-object, at level 3 unless told (the
-- caller's caller: the user's code).
local function check_object(obj, fname, level)
    if getmetatable(obj) ~= object_mt then
        error("resty.ffi." .. fname .. ": argument #1 must be an object from"
              .. " resty.ffi.open() or a call, got " .. type(obj), level or 3)
    end
end

-- The ways in (call, call_timeout, submit) take their arguments as
-- varargs, and LuaJIT never starts a trace at the entry of a vararg
-- function: code there runs in the interpreter, where an FFI call costs
-- several times what it costs compiled (argument conversions, a boxed
-- int64 result) and every compiled helper it calls is a trace exit. So
-- the vararg methods only count their arguments and tail-call a plain
-- function (call_few, submit_few) that takes up to three of them as
-- parameters and does the rest, compiled. More arguments take the
-- *_many path, which encodes them in the interpreter.

-- prepare(obj, op [, level]) -> true, or nil, err: what every way in
-- checks before it encodes (op's type is a caller's error, raised at level
-- 3 unless told).
local function prepare(obj, op, level)
    if type(op) ~= "string" then
        error("resty.ffi: the operation name must be a string, got " .. type(op), level or 3)
    end
    if not lib then
        local ok, err = _M.load()
        if not ok then
            return nil, err
        end
    end
    if obj.closed then
        return nil, "closed"
    end
    return true
end

-- push(obj, op, timeout, kind, p, n) -> ticket, or nil, err: hands the
-- encoded arguments p[0..n) to Go. Never blocks.
local function push(obj, op, timeout, kind, p, n)
    local ticket = next_ticket
    local rc = lib.rffi_push(shared, kind, ticket, obj.id, op, #op, p, n, timeout)
    if rc < 0 then
        return nil, submit_errors[tonumber(rc)] or "submit failed"
    end
    next_ticket = ticket + 1
    return ticket
end

local function get_waiter()
    if spare_count > 0 then
        local w = spare_waiters[spare_count]
        spare_waiters[spare_count] = nil
        spare_count = spare_count - 1
        return w
    end
    return { sema = sema_new(0) }
end

-- Set when the dispatcher has retired (the worker is exiting): waiters then
-- drain the completion ring themselves, between short sleeps.
local dispatcher_gone = false
local drain_all

-- wait for ticket; returns value or nil, err, detail. The loop tolerates
-- wake-ups without a result (a reused semaphore's stale count, or the
-- retiring dispatcher nudging waiters into draining by themselves).
local function wait(ticket, timeout)
    local w = get_waiter()
    w.done = false
    waiting[ticket] = w
    waiting_count = waiting_count + 1
    local deadline = ngx_now() + timeout / 1000
    if not dispatcher_gone and timeout >= 1 then
        -- the usual case: one wait, outside the loop below, which LuaJIT
        -- cannot compile when it runs once ("inner loop in root trace")
        w.sema:wait(timeout / 1000)
    end
    while not w.done do
        local left = deadline - ngx_now()
        -- below 1 ms, ngx.semaphore's wait returns at once without
        -- yielding, so ngx.now() would never move: that is expiry
        if left < 0.001 then
            break
        end
        if dispatcher_gone then
            drain_all()
            if not w.done then
                ngx_sleep(0.001)
            end
        else
            w.sema:wait(left)
        end
    end
    if not w.done then
        waiting[ticket] = nil
        waiting_count = waiting_count - 1
        -- Go cancels the context; the late result is freed on arrival.
        if not push_control(KIND_CANCEL, ticket, 0) then
            lib.rffi_cancel(ticket) -- the ring is full: take the slow path
        end
        return nil, "timeout"
    end
    local status, value, detail = w.status, w.value, w.detail
    w.value, w.detail = nil, nil
    spare_count = spare_count + 1
    spare_waiters[spare_count] = w
    if status == STATUS_OK then
        return value
    end
    if detail == nil then
        return nil, value
    end
    return nil, value, detail
end

local function check_phase()
    local phase = get_phase()
    if no_wait_phases[phase] then
        return nil, "resty.ffi: cannot wait for a result in the " .. phase
                    .. " phase (nginx-lua cannot yield there); use :submit() to send"
                    .. " without waiting, or ngx.timer.at() to wait in a timer"
    end
    return true
end

local function check_timeout(timeout, level)
    if timeout == nil then
        return config.call_timeout
    end
    if type(timeout) ~= "number" or not (timeout > 0) then
        error("resty.ffi: the timeout must be a positive number of milliseconds, got "
              .. tostring(timeout), level or 3)
    end
    if timeout > 2147483647 then
        timeout = 2147483647
    end
    return timeout
end

-- Every way in is reached by tail calls only, so an error raised at level
-- 3 from a function it calls (or 4 from admit's) names the user's code.

-- admit(fname, obj, timeout, op) -> the timeout in ms, or nil, err: the
-- checks of a waited-for call.
local function admit(fname, obj, timeout, op)
    check_object(obj, fname, 4)
    timeout = check_timeout(timeout, 4)
    local ok, err = check_phase()
    if not ok then
        return nil, err
    end
    ok, err = prepare(obj, op, 4)
    if not ok then
        return nil, err
    end
    return timeout
end

-- push_wait(obj, op, timeout, p, n): push an encoded call, then wait.
local function push_wait(obj, op, timeout, p, n)
    local ticket, err = push(obj, op, timeout, KIND_CALL, p, n)
    if not ticket then
        return nil, err
    end
    return wait(ticket, timeout)
end

-- call_few(fname, obj, timeout, op, n, a, b, c): a waited-for call with
-- n <= 3 arguments a, b, c.
local function call_few(fname, obj, timeout, op, n, a, b, c)
    local err
    timeout, err = admit(fname, obj, timeout, op)
    if not timeout then
        return nil, err
    end
    return push_wait(obj, op, timeout, encode_few(1, n, a, b, c))
end

-- call_many(fname, obj, timeout, op, ...): call_few for any number of
-- arguments.
local function call_many(fname, obj, timeout, op, ...)
    local err
    timeout, err = admit(fname, obj, timeout, op)
    if not timeout then
        return nil, err
    end
    return push_wait(obj, op, timeout, encode_args(1, select("#", ...), ...))
end

-- obj:call(op, ...) -> result, or nil, err [, detail]. Waits up to the
-- default call timeout.
function object_mt.call(obj, op, ...)
    local n = select("#", ...)
    if n <= 3 then
        return call_few("call", obj, nil, op, n, ...)
    end
    return call_many("call", obj, nil, op, ...)
end

-- obj:call_timeout(timeout_ms, op, ...): call with its own timeout.
function object_mt.call_timeout(obj, timeout, op, ...)
    local n = select("#", ...)
    if n <= 3 then
        return call_few("call_timeout", obj, timeout, op, n, ...)
    end
    return call_many("call_timeout", obj, timeout, op, ...)
end

-- submit_few(obj, op, n, a, b, c) and submit_many(obj, op, ...): the
-- fire-and-forget way in, split like call_few and call_many.
local function push_submit(obj, op, p, n)
    local ticket, err = push(obj, op, config.call_timeout, KIND_SUBMIT, p, n)
    if not ticket then
        return nil, err
    end
    return true
end

local function submit_few(obj, op, n, a, b, c)
    check_object(obj, "submit")
    local ok, err = prepare(obj, op)
    if not ok then
        return nil, err
    end
    return push_submit(obj, op, encode_few(1, n, a, b, c))
end

local function submit_many(obj, op, ...)
    check_object(obj, "submit")
    local ok, err = prepare(obj, op)
    if not ok then
        return nil, err
    end
    return push_submit(obj, op, encode_args(1, select("#", ...), ...))
end

-- obj:submit(op, ...) -> true, or nil, err. Fire-and-forget: works in every
-- phase; the result is dropped, failures are logged by Go.
function object_mt.submit(obj, op, ...)
    local n = select("#", ...)
    if n <= 3 then
        return submit_few(obj, op, n, ...)
    end
    return submit_many(obj, op, ...)
end

-- handle:recv(timeout_ms) -> next item, or nil, "eof" at the end, or
-- nil, "timeout" / nil, err.
function object_mt.recv(obj, timeout)
    check_object(obj, "recv")
    return object_mt.call_timeout(obj, timeout, "recv")
end

-- obj:close(): release the Go object now (it is also closed on GC and on
-- worker exit). Returns true.
function object_mt.close(obj)
    check_object(obj, "close")
    if obj.closed then
        return true
    end
    obj.closed = true
    if obj.anchor then
        ffi_gc(obj.anchor, nil)
        obj.anchor = nil
    end
    push_close(obj.id)
    return true
end

-- Module-level spellings of the same calls, for code that prefers them.
function _M.call(obj, op, ...) return object_mt.call(obj, op, ...) end
function _M.call_timeout(obj, t, op, ...) return object_mt.call_timeout(obj, t, op, ...) end
function _M.submit(obj, op, ...) return object_mt.submit(obj, op, ...) end
function _M.close(obj) return object_mt.close(obj) end
_M.is_object = function(v) return getmetatable(v) == object_mt end
_M.null = ngx.null
_M.array_mt = codec.array_mt
_M.map_mt = codec.map_mt
_M.empty_array = codec.empty_array

---------------------------------------------------------------- dispatcher

local log_prefix = "resty.ffi(go): "

-- drain_all moves every completion to its waiter; returns how many. The
-- buffers belong to Go: they are read (decoded) here, before
-- rffi_done_completions hands them back.
drain_all = function()
    local total = 0
    repeat
        local n = lib.rffi_pop_completions(shared, completions, BATCH)
        for i = 0, n - 1 do
            local c = completions[i]
            local status = c.status
            if status == STATUS_LOG then
                ngx_log(c.level, log_prefix, ffi_string(c.data, c.len))
            else
                local ticket = tonumber(c.ticket)
                local w = waiting[ticket]
                if w then
                    waiting[ticket] = nil
                    waiting_count = waiting_count - 1
                    local v, err = decode(c.data, c.len)
                    if err then
                        w.status, w.value = STATUS_ERROR, err
                    elseif status == STATUS_OK then
                        w.status, w.value = STATUS_OK, v
                    else
                        -- errors travel as [message, detail]
                        w.status = STATUS_ERROR
                        if type(v) == "table" then
                            w.value, w.detail = v[1], v[2]
                            if w.detail == ngx.null then w.detail = nil end
                        else
                            w.value = tostring(v)
                        end
                    end
                    w.done = true
                    w.sema:post(1)
                end
            end
        end
        total = total + n
    until lib.rffi_done_completions(shared) == 0
    return total
end

-- retire ends the dispatcher of an exiting worker. Requests still running
-- may call Go after this, so Go keeps running (it shuts down at process
-- exit, or in exit_worker_by_lua); but the dispatcher's pending read would
-- keep the worker alive, so it leaves once nobody waits (bounded), and
-- nudges any waiter left into draining by itself.
local function retire()
    local deadline = ngx_now() + config.shutdown_timeout / 1000
    while waiting_count > 0 and ngx_now() < deadline do
        drain_all()
        ngx_sleep(0.002)
    end
    dispatcher_gone = true
    for _, w in pairs(waiting) do
        w.sema:post(1)
    end
end

local dispatcher_running = false
local exit_watch_started = false
local DAY_MS = 86400000

local function exit_watch(premature)
    -- Pending timers run early (premature) when the worker exits: wake the
    -- dispatcher so it notices, instead of sleeping on.
    if premature and lib then
        lib.rffi_wake()
    end
end

local function dispatcher(premature)
    if premature or closed then
        dispatcher_gone = true
        dispatcher_running = false
        return
    end
    local path_buf = ffi_new("char[?]", 256)
    if lib.rffi_listen(path_buf, 256, err_buf, 512) ~= 0 then
        ngx_log(ngx_ERR, go_error("resty.ffi: dispatcher: "))
        dispatcher_running = false
        return
    end
    local sock = ngx.socket.tcp()
    local ok, err = sock:connect("unix:" .. ffi_string(path_buf))
    if not ok then
        ngx_log(ngx_ERR, "resty.ffi: dispatcher: connecting to the doorbell ",
                ffi_string(path_buf), ": ", err)
        dispatcher_running = false
        return
    end
    sock:settimeout(DAY_MS)
    while true do
        drain_all()
        if worker_exiting() or closed then
            break
        end
        local data
        data, err = sock:receiveany(4096)
        if not data and err ~= "timeout" then
            sock:close()
            dispatcher_running = false
            if worker_exiting() or closed then
                dispatcher_gone = true
                return
            end
            ngx_log(ngx_WARN, "resty.ffi: dispatcher: doorbell ", err, ", reconnecting")
            start_dispatcher()
            return
        end
    end
    retire()
    sock:close()
    dispatcher_running = false
end

start_dispatcher = function()
    if dispatcher_running then
        return true
    end
    local ok, err = timer_at(0, dispatcher)
    if not ok then
        return nil, "resty.ffi: cannot start the dispatcher: " .. tostring(err)
    end
    dispatcher_running = true
    if not exit_watch_started then
        ok, err = timer_at(DAY_MS / 1000 * 365, exit_watch)
        if ok then
            exit_watch_started = true
        else
            ngx_log(ngx_WARN, "resty.ffi: cannot start the exit watch timer: ", err)
        end
    end
    return true
end

---------------------------------------------------------------- the rest

-- stats() -> table of counters (see README), or nil, err.
function _M.stats()
    if not lib then
        return nil, "not loaded"
    end
    if lib.rffi_stats(stats_out, stats_len) ~= 0 then
        return nil, "stats unavailable"
    end
    local v, err = decode(stats_out[0], stats_len[0])
    C.free(stats_out[0])
    if not v then
        return nil, err
    end
    v.waiting = waiting_count
    return v
end

-- shutdown(timeout_ms): stop taking calls and close every runtime, waiting
-- up to timeout for producers to flush. Runs at worker exit by itself; call
-- it from exit_worker_by_lua to be explicit. Returns true or nil, err.
function _M.shutdown(timeout)
    if not lib or closed then
        return true
    end
    closed = true
    dispatcher_gone = true
    local rc = lib.rffi_shutdown(timeout or config.shutdown_timeout, err_buf, 512)
    drain_all()
    for t, w in pairs(waiting) do
        waiting[t] = nil
        w.status, w.value, w.done = STATUS_ERROR, "closing", true
        w.sema:post(1)
    end
    waiting_count = 0
    if rc ~= 0 then
        local err = go_error("resty.ffi: shutdown: ")
        ngx_log(ngx_WARN, err)
        return nil, err
    end
    return true
end

function _M.loaded()
    return lib ~= nil
end

return _M
