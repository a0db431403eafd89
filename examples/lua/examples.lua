-- Shared setup of the example server: modules register what they start in
-- init_worker (consumers, listeners) here.
local _M = { _VERSION = "0.1.0", init_workers = {} }

function _M.on_init_worker(fn)
    _M.init_workers[#_M.init_workers + 1] = fn
end

function _M.init_worker()
    for _, fn in ipairs(_M.init_workers) do
        fn()
    end
end

return _M
