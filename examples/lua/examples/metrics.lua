-- resty.ffi.stats() in the Prometheus text exposition format, for the
-- worker that answers the scrape (label it: each worker has its own Go
-- runtime and counters).
local rffi = require "resty.ffi"

local _M = { _VERSION = "0.1.0" }

local gauges = {
    in_flight = "calls accepted and not yet delivered to Lua",
    queue_depth = "completions waiting in the completion ring",
    submit_queue = "submissions waiting in the submission ring",
    handles = "live Go objects (runtimes, streams, transactions)",
    goroutines = "goroutines of this worker's Go runtime",
    waiting = "Lua threads waiting for a result",
}
local counters = {
    buffers_allocated = "C buffers handed from Go to Lua",
    buffers_freed = "C buffers freed",
    doorbell_rings = "doorbell rings (dispatcher wake-ups)",
    pump_wakeups = "times the Go pump was woken from sleep",
    logs_dropped = "Go log records dropped because the dispatcher lagged",
}
local runtime_counters = {
    "submitted", "completed", "failed", "canceled", "bytes_in", "bytes_out",
}

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end
    table.sort(keys)
    return keys
end

function _M.render()
    local st, err = rffi.stats()
    if not st then
        return "# resty.ffi not loaded: " .. tostring(err) .. "\n"
    end
    local worker = 'worker="' .. ngx.worker.id() .. '"'
    local out = {}
    for _, k in ipairs(sorted_keys(gauges)) do
        out[#out + 1] = ("# HELP resty_ffi_%s %s\n# TYPE resty_ffi_%s gauge\nresty_ffi_%s{%s} %s\n")
            :format(k, gauges[k], k, k, worker, tostring(st[k]))
    end
    for _, k in ipairs(sorted_keys(counters)) do
        out[#out + 1] = ("# HELP resty_ffi_%s_total %s\n# TYPE resty_ffi_%s_total counter\nresty_ffi_%s_total{%s} %s\n")
            :format(k, counters[k], k, k, worker, tostring(st[k]))
    end
    for _, c in ipairs(runtime_counters) do
        out[#out + 1] = ("# TYPE resty_ffi_runtime_%s_total counter\n"):format(c)
        for _, name in ipairs(sorted_keys(st.runtimes)) do
            out[#out + 1] = ('resty_ffi_runtime_%s_total{%s,runtime="%s"} %s\n')
                :format(c, worker, name, tostring(st.runtimes[name][c]))
        end
    end
    return table.concat(out)
end

return _M
