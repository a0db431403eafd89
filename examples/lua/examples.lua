-- Shared setup of the example server: what init_worker starts.
local _M = { _VERSION = "0.1.0" }

function _M.init_worker()
    -- the Kafka consumer and the LISTEN loop behind /kv/*
    require("examples.kv").start()
end

return _M
