-- A key/value cache in a lua_shared_dict, kept by two background loops that
-- init_worker starts:
--   * a Kafka consumer (a member of a consumer group, one per worker: the
--     workers split the topic's partitions) stores each message's value
--     under its key;
--   * a Postgres LISTEN loop (worker 0 only: the dict is shared by every
--     worker, so one listener is enough) deletes the key a NOTIFY names.
-- Both loops wait with short timeouts and look at ngx.worker.exiting()
-- between waits, so a reload or a stop never waits for them longer than
-- one timeout, and the consumer leaves its group at once.
local kafka = require "resty.ffi.kafka"
local pg = require "resty.ffi.postgres"

local ngx = ngx
local ngx_log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local timer_at = ngx.timer.at
local exiting = ngx.worker.exiting

local _M = { _VERSION = "0.1.0" }

local BROKERS = { "127.0.0.1:19092", "127.0.0.1:19093", "127.0.0.1:19094" }
local DB = { host = "127.0.0.1", port = 15432, user = "rffi", password = "rffi_pw",
             database = "rffi", sslmode = "disable" }

-- What the locations use; start() may override them (the tests do).
_M.conf = {
    dict = "cache",
    topic = "examples-kv",
    -- One group per nginx instance (named by its prefix here; add the host
    -- name when several machines share the brokers): every instance must
    -- see every message to fill its own dict, while its workers share the
    -- partitions. A new group starts at the topic's first message.
    group_id = "examples-kv " .. ngx.config.prefix(),
    channel = "examples_kv",
    brokers = BROKERS,
    db = DB,
    wait = 1000,         -- ms each fetch / recv waits before looking at exiting()
    retry = 2,           -- s before a loop that could not start tries again
}

local function restart_later(fn, what, err)
    ngx_log(ERR, "examples.kv: ", what, ": ", err, "; retrying in ", _M.conf.retry, " s")
    local ok, terr = timer_at(_M.conf.retry, fn)
    if not ok and terr ~= "process exiting" then
        ngx_log(ERR, "examples.kv: cannot restart ", what, ": ", terr)
    end
end

-- The highest offset stored from each partition, kept in the dict itself
-- so that every worker sees it. Delivery is at-least-once: a message whose
-- commit had not landed when a rebalance moved its partition is fetched
-- again by the next owner, maybe after a NOTIFY removed its key or a newer
-- message replaced its value; storing it again would bring the old value
-- back. (Two workers hold one partition at once only while a rebalance
-- hands it over; the check and the store are not one atomic step then.)
local function applied_mark(m)
    return "\0applied " .. m.topic .. "/" .. m.partition
end

-- store_batch(dict, batch): each message's value under its key, but not
-- a message from a partition whose later one is already stored.
function _M.store_batch(dict, batch)
    for _, m in ipairs(batch) do
        local mark = applied_mark(m)
        local last = dict:get(mark)
        if last == nil or m.offset > last then
            if m.key then
                -- the offset as the entry's flags (+1: flags 0 read back as
                -- nil) tells a new store of a key from an older one with the
                -- same value (/kv/put waits for it)
                local ok, err = dict:set(m.key, m.value, 0, m.offset % 0x7ffffffe + 1)
                if not ok then
                    ngx_log(WARN, "examples.kv: dict:set ", m.key, ": ", err)
                end
            end
            dict:set(mark, m.offset)
        end
    end
end

local consume

consume = function(premature)
    if premature or exiting() then
        return
    end
    local conf = _M.conf
    local dict = ngx.shared[conf.dict]
    -- two partitions, one per worker; "already exists" after the first time
    kafka.create_topic({ brokers = conf.brokers }, conf.topic, 2, 1)
    local c, err = kafka.consumer({
        brokers = conf.brokers, topic = conf.topic, group_id = conf.group_id,
        -- a worker that left (reload) hands its partitions over within seconds
        session_timeout = 6000, heartbeat_interval = 1000, rebalance_timeout = 6000,
        max_wait = conf.wait,
    })
    if not c then
        return restart_later(consume, "kafka consumer", err)
    end
    while not exiting() do
        local batch, ferr = c:fetch_batch(500, conf.wait)
        if batch then
            _M.store_batch(dict, batch)
            -- after the dict has them: at-least-once (applied_mark skips replays)
            local ok, cerr = c:commit(batch)
            if not ok then
                ngx_log(WARN, "examples.kv: commit: ", cerr)
            end
        elseif ferr ~= "timeout" then
            ngx_log(WARN, "examples.kv: fetch: ", ferr)
            ngx.sleep(1)
        end
    end
    c:close()
end

local listen

listen = function(premature)
    if premature or exiting() then
        return
    end
    local conf = _M.conf
    local dict = ngx.shared[conf.dict]
    local db, err = pg.new(conf.db)
    local l
    if db then
        l, err = db:listen(conf.channel)
    end
    if not l then
        return restart_later(listen, "LISTEN " .. conf.channel, err)
    end
    while not exiting() do
        local n, rerr = l:recv(conf.wait)
        if n then
            dict:delete(n.payload)
        elseif rerr ~= "timeout" then
            -- said once per outage; the next recv reconnects and listens again
            ngx_log(WARN, "examples.kv: ", rerr)
        end
    end
    l:close()
end

-- wait_until(key, value, ms, old_flags) -> ms it took until dict[key] ==
-- value (nil for "absent"), stored with flags other than old_flags when
-- given; or nil after ms. For the demo locations only: a real handler
-- reads the dict and moves on.
function _M.wait_until(key, value, ms, old_flags)
    local dict = ngx.shared[_M.conf.dict]
    ngx.update_time()
    local t0 = ngx.now()
    repeat
        local v, flags = dict:get(key)
        if v == value and (old_flags == nil or flags ~= old_flags) then
            ngx.update_time()
            return math.floor((ngx.now() - t0) * 1000 + 0.5)
        end
        ngx.sleep(0.005)
        ngx.update_time()
    until ngx.now() - t0 > ms / 1000
    return nil
end

-- start(overrides): from init_worker_by_lua; the loops run in timers
-- because init_worker cannot wait.
function _M.start(overrides)
    for k, v in pairs(overrides or {}) do
        _M.conf[k] = v
    end
    assert(timer_at(0, consume))
    -- (nil without a master process: then this is the only worker)
    if (ngx.worker.id() or 0) == 0 then
        assert(timer_at(0, listen))
    end
end

return _M
