# vim:set ft= ts=4 sw=4 et fdm=marker:
# resty.ffi.postgres: pool exhaustion, server restart, authentication and
# TLS failures.

use lib '.';
use t::FFI;
use IO::Socket::INET;

need_backend('postgres', '127.0.0.1', 15432);
repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();

# A server that answers every SSLRequest with 'N' (TLS not offered).
our $NoTLSPid;
{
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 15439,
                                  Listen => 16, ReuseAddr => 1)
        or die "cannot listen on 127.0.0.1:15439: $!";
    $NoTLSPid = fork();
    if (defined $NoTLSPid && $NoTLSPid == 0) {
        while (my $c = $l->accept) {
            my $buf;
            sysread($c, $buf, 8);
            syswrite($c, "N");
            close $c;
        }
        exit 0;
    }
    close $l;
}
END { kill 'TERM', $NoTLSPid if $NoTLSPid }

$ENV{TEST_NGINX_PG_CA} = "$t::FFI::Root/.run/postgres/server.crt";

our $HttpConfig = <<'_EOC_';
    init_by_lua_block {
        PG = { host = "127.0.0.1", port = 15432, user = "rffi", password = "rffi_pw",
               database = "rffi", sslmode = "disable" }
        function pg_opts(extra)
            local o = {}
            for k, v in pairs(PG) do o[k] = v end
            for k, v in pairs(extra or {}) do o[k] = v end
            return o
        end
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $HttpConfig . ($block->http_config // ''));
});

run_tests();

__DATA__

=== TEST 1: pool exhaustion (max 2 connections, 20 concurrent requests) queues, then succeeds
--- config
    location = /q {
        content_by_lua_block {
            local db = assert(require("resty.ffi.postgres").new(pg_opts{ max_conns = 2 }))
            local v, err = db:query_value("SELECT $1::int FROM pg_sleep(0.02)", tonumber(ngx.var.arg_i))
            ngx.print(v or err)
        }
    }
    location = /t {
        content_by_lua_block {
            local reqs = {}
            for i = 1, 20 do
                reqs[i] = { "/q", { args = { i = i } } }
            end
            local res = { ngx.location.capture_multi(reqs) }
            local sum = 0
            for i = 1, 20 do
                sum = sum + (tonumber(res[i].body) or 0)
                if not tonumber(res[i].body) then ngx.say(res[i].body) end
            end
            ngx.say("sum ", sum)
            local db = assert(require("resty.ffi.postgres").new(pg_opts{ max_conns = 2 }))
            local st = db:stats()
            ngx.say("max ", st.max_conns, " total<=2 ", st.total_conns <= 2, " waited ", st.empty_acquire_count > 0)
        }
    }
--- request
GET /t
--- response_body
sum 210
max 2 total<=2 true waited true
--- no_error_log
[error]



=== TEST 2: pool exhaustion with a short timeout times out cleanly, and the pool still works
--- config
    location = /t {
        content_by_lua_block {
            local pg = require "resty.ffi.postgres"
            -- same Go options, so the same pool: open both connections first
            local warm = assert(pg.new(pg_opts{ max_conns = 2, timeout = 10000 }))
            local w1 = ngx.thread.spawn(function() return warm:query_value("SELECT 1 FROM pg_sleep(0.05)") end)
            local w2 = ngx.thread.spawn(function() return warm:query_value("SELECT 1 FROM pg_sleep(0.05)") end)
            ngx.thread.wait(w1)
            ngx.thread.wait(w2)
            local db = assert(pg.new(pg_opts{ max_conns = 2, timeout = 500 }))
            local threads = {}
            for i = 1, 20 do
                threads[i] = ngx.thread.spawn(function()
                    return db:query_value("SELECT 1 FROM pg_sleep(0.1)")
                end)
            end
            local ok, timeouts, other = 0, 0, 0
            for i = 1, 20 do
                local _, v, err = ngx.thread.wait(threads[i])
                if v == 1 then ok = ok + 1
                elseif err == "timeout" then timeouts = timeouts + 1
                else other = other + 1 ngx.say(err) end
            end
            ngx.say("ok>0 ", ok > 0, " timeouts>0 ", timeouts > 0, " other ", other, " total ", ok + timeouts)
            ngx.sleep(0.3)
            ngx.say("after: ", db:query_value("SELECT 42"))
        }
    }
--- request
GET /t
--- response_body
ok>0 true timeouts>0 true other 0 total 20
after: 42
--- no_error_log
[error]



=== TEST 3: server restarted mid-run: errors, then recovery without restarting nginx
--- init
if (!fork()) { select(undef, undef, undef, 0.5); exec("$t::FFI::Root/t/servers/postgres/ctl restart >/dev/null 2>&1"); }
--- config
    location = /t {
        content_by_lua_block {
            local db = assert(require("resty.ffi.postgres").new(pg_opts{ timeout = 2000 }))
            local errors, after_error = 0, 0
            for _ = 1, 200 do
                local v, err = db:query_value("SELECT 1")
                if v == 1 then
                    if errors > 0 then after_error = after_error + 1 end
                    if after_error >= 3 then break end
                else
                    errors = errors + 1
                end
                ngx.sleep(0.05)
            end
            ngx.say("saw errors: ", errors > 0, ", recovered: ", after_error >= 3)
        }
    }
--- request
GET /t
--- response_body
saw errors: true, recovered: true
--- timeout: 20
--- no_error_log
[error]



=== TEST 4: wrong password: a clear error with SQLSTATE, no password in it
--- config
    location = /t {
        content_by_lua_block {
            local db = assert(require("resty.ffi.postgres").new(pg_opts{ password = "wr0ng-s3cret" }))
            local v, err, detail = db:query_value("SELECT 1")
            ngx.say(v, " ", err:find("password authentication failed", 1, true) ~= nil,
                    " ", err:find("wr0ng", 1, true) == nil, " ", detail and detail.code)
        }
    }
--- request
GET /t
--- response_body
nil true true 28P01
--- no_error_log
[error]



=== TEST 5: TLS required but not offered by the server: a clear error
--- config
    location = /t {
        content_by_lua_block {
            local db = assert(require("resty.ffi.postgres").new(pg_opts{ port = 15439, sslmode = "require" }))
            local v, err = db:query_value("SELECT 1")
            ngx.say(v, " ", err:find("server refused TLS connection", 1, true) ~= nil)
            ngx.log(ngx.WARN, "TLS error: ", err)
        }
    }
--- request
GET /t
--- response_body
nil true
--- no_error_log
[error]



=== TEST 6: TLS verified against the test CA; a TLS-only role refuses plain connections
--- config
    location = /t {
        content_by_lua_block {
            local db = assert(require("resty.ffi.postgres").new(pg_opts{ user = "rffi_tls",
                sslmode = "verify-full", sslrootcert = "$TEST_NGINX_PG_CA" }))
            ngx.say(db:query_value("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
            local plain = assert(require("resty.ffi.postgres").new(pg_opts{ user = "rffi_tls" }))
            local v, err = plain:query_value("SELECT 1")
            ngx.say(v, " ", err:find("no encryption", 1, true) ~= nil)
        }
    }
--- request
GET /t
--- response_body
true
nil true
--- no_error_log
[error]
