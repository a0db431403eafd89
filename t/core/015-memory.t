# vim:set ft= ts=4 sw=4 et fdm=marker:
# Worker memory: after loading, the library's read-only pages that only
# loading touched (package initializers, the relocation table) are released,
# so a worker keeps mapped only the code and tables it goes on to use.
use lib '.';
use t::FFI;

# /t makes 1000 echo calls, then reports how much of the library's code
# (its executable mapping in this worker's smaps) is resident.
our $Measure = <<'_EOC_';
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local echo = assert(rffi.open("echo"))
            for i = 1, 1000 do
                assert(echo:call("echo", i) == i)
            end
            local size, rss, in_text
            for line in io.lines("/proc/self/smaps") do
                local a, b, perm, path = line:match("^(%x+)%-(%x+) (%S+) %S+ %S+ %S+%s*(.*)$")
                if a then
                    in_text = perm == "r-xp" and path:find("resty_ffi_go", 1, true)
                    if in_text then size = (tonumber(b, 16) - tonumber(a, 16)) / 1024 end
                elseif in_text then
                    rss = tonumber(line:match("^Rss:%s+(%d+)")) or rss
                end
            end
            local released = rffi.stats().init_pages_released
            ngx.log(ngx.INFO, "code mapping ", size, " KiB, resident ", rss, " KiB, released ", released)
            ngx.say("released the code: ", released >= size * 1024)
            ngx.say("code resident: ", rss < size / 4 and "under" or "over", " a quarter")
        }
    }
_EOC_

# /t loads the library and says what load() returned.
our $Load = <<'_EOC_';
    location = /t {
        content_by_lua_block {
            local ok, err = require("resty.ffi").load()
            ngx.say(ok, " ", err)
        }
    }
_EOC_

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: by default the code loading touched is released and stays mostly unmapped through 1000 calls
--- config eval: $::Measure
--- request
GET /t
--- response_body
released the code: true
code resident: under a quarter
--- no_error_log
[error]



=== TEST 2: release_init_pages = false keeps it mapped (the initializers reach all over the code)
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ release_init_pages = false }
    }
--- config eval: $::Measure
--- request
GET /t
--- response_body
released the code: false
code resident: over a quarter
--- no_error_log
[error]



=== TEST 3: release_init_pages must be a boolean
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ release_init_pages = "yes" }
    }
--- config eval: $::Load
--- request
GET /t
--- response_body_like
^nil .*release_init_pages must be a boolean, got string
--- no_error_log
[error]



=== TEST 4: go_gc_percent must be a positive integer
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ go_gc_percent = 0 }
    }
--- config eval: $::Load
--- request
GET /t
--- response_body_like
^nil .*go_gc_percent must be a positive integer up to 100000, got 0
--- no_error_log
[error]
