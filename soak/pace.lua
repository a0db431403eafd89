-- wrk script of soak/run.sh: each connection waits SOAK_PACE_MS between
-- requests, so the load stays below what the 2 cores can serve and the
-- recovery times measure the library, not a starved scheduler.
local pause = tonumber(os.getenv("SOAK_PACE_MS")) or 1

function delay()
    return pause
end
