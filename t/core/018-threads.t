# vim:set ft= ts=4 sw=4 et fdm=marker:
# Go's threads run under SCHED_BATCH, so their wake-ups never preempt the
# nginx event loop; the worker thread itself keeps its policy.
use lib '.';
use t::FFI;

# /t makes calls that keep Go busy on several goroutines at once, then
# reports the policies: the worker thread's own (from /proc/thread-self)
# and how many of the process's threads run under SCHED_BATCH.
our $Policies = <<'_EOC_';
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local echo = assert(rffi.open("echo"))
            local threads = {}
            for t = 1, 50 do
                threads[t] = ngx.thread.spawn(function()
                    for i = 1, 20 do
                        assert(echo:call("payload", 65536))
                        assert(echo:call("sleep", 1))
                    end
                end)
            end
            for t = 1, 50 do
                assert(ngx.thread.wait(threads[t]))
            end
            local f = assert(io.open("/proc/thread-self/stat"))
            local stat = f:read("*a")
            f:close()
            -- the policy is field 41; fields are counted after the name
            local fields = {}
            for field in stat:match("%) (.*)"):gmatch("%S+") do
                fields[#fields + 1] = field
            end
            ngx.say("worker thread policy: ", fields[41 - 2])
            local st = assert(rffi.stats())
            ngx.say("Go threads: ", st.threads - 1 >= 2)
            ngx.say("Go threads under SCHED_BATCH: ",
                    st.batch_threads == st.threads - 1 and "all" or st.batch_threads)
        }
    }
_EOC_

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
run_tests();

__DATA__

=== TEST 1: every Go thread runs under SCHED_BATCH, the worker thread under SCHED_OTHER
--- config eval: $::Policies
--- request
GET /t
--- response_body
worker thread policy: 0
Go threads: true
Go threads under SCHED_BATCH: all
--- no_error_log
[error]



=== TEST 2: with two Ps, the threads Go starts later inherit SCHED_BATCH too
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ go_max_procs = 2 }
    }
--- config eval: $::Policies
--- request
GET /t
--- response_body
worker thread policy: 0
Go threads: true
Go threads under SCHED_BATCH: all
--- no_error_log
[error]



=== TEST 3: go_sched_batch = false leaves every thread under the worker's policy
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ go_sched_batch = false }
    }
--- config eval: $::Policies
--- request
GET /t
--- response_body
worker thread policy: 0
Go threads: true
Go threads under SCHED_BATCH: 0
--- no_error_log
[error]



=== TEST 4: go_sched_batch must be a boolean
--- config
    location = /t {
        content_by_lua_block {
            local ok, err = pcall(require("resty.ffi").configure, { go_sched_batch = "yes" })
            ngx.say(ok, " ", err)
        }
    }
--- request
GET /t
--- response_body_like
^false .*'go_sched_batch' must be a boolean, got string
--- no_error_log
[error]
