# vim:set ft= ts=4 sw=4 et fdm=marker:
# resty.ffi.postgres security defaults: TLS the user asks for verifies the
# server, the DSN password never reaches the error log or an error string,
# and SQL in parameters stays data.

use lib '.';
use t::FFI;

need_backend('postgres', '127.0.0.1', 15432);
repeat_each(1);
plan tests => repeat_each() * (blocks() * 3 + 2);
no_shuffle();

$ENV{TEST_NGINX_PG_CA} = "$t::FFI::Root/.run/postgres/server.crt";

our $HttpConfig = <<'_EOC_';
    init_by_lua_block {
        -- rffi_tls may log in over TLS only (t/servers/postgres/ctl); the
        -- server's certificate is self-signed
        PG_TLS = { host = "127.0.0.1", port = 15432, user = "rffi_tls", password = "rffi_pw",
                   database = "rffi", connect_timeout = 3000 }
        function pg_opts(base, extra)
            local o = {}
            for k, v in pairs(base) do o[k] = v end
            for k, v in pairs(extra or {}) do o[k] = v end
            return o
        end
        -- try(opts): "ssl=true" on success, else the error's verdict
        function try(opts)
            local pg = require "resty.ffi.postgres"
            local db = assert(pg.new(opts))
            local v, err = db:query_value("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            if v ~= nil then
                return "ssl=" .. tostring(v)
            end
            if err:find("certificate signed by unknown authority", 1, true) then
                return "refused: unknown authority"
            end
            return "other error: " .. err
        end
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $HttpConfig . ($block->http_config // ''));
});

run_tests();

__DATA__

=== TEST 1: sslmode=require verifies the certificate: a self-signed server is refused without its CA
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("require, table: ", try(pg_opts(PG_TLS, { sslmode = "require" })))
            ngx.say("require, dsn: ", try({ connect_timeout = 3000,
                dsn = "postgres://rffi_tls:rffi_pw@127.0.0.1:15432/rffi?sslmode=require" }))
            ngx.say("require, keyword dsn: ", try({ connect_timeout = 3000,
                dsn = "host=127.0.0.1 port=15432 user=rffi_tls password=rffi_pw dbname=rffi sslmode=require" }))
            ngx.say("verify-full: ", try(pg_opts(PG_TLS, { sslmode = "verify-full" })))
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
require, table: refused: unknown authority
require, dsn: refused: unknown authority
require, keyword dsn: refused: unknown authority
verify-full: refused: unknown authority
--- no_error_log
[error]



=== TEST 2: the default (prefer) and allow never accept an unverified certificate either
--- config
    location = /t {
        content_by_lua_block {
            -- rffi_tls has no plain fallback: verification is what fails
            ngx.say("default: ", try(PG_TLS))
            ngx.say("prefer: ", try(pg_opts(PG_TLS, { sslmode = "prefer" })))
            ngx.say("allow: ", try(pg_opts(PG_TLS, { sslmode = "allow" })))
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
default: refused: unknown authority
prefer: refused: unknown authority
allow: refused: unknown authority
--- no_error_log
[error]



=== TEST 3: with the CA (sslrootcert) every TLS mode connects, verified
--- config
    location = /t {
        content_by_lua_block {
            for _, mode in ipairs{ "prefer", "require", "verify-ca", "verify-full" } do
                ngx.say(mode, ": ", try(pg_opts(PG_TLS, { sslmode = mode, sslrootcert = "$TEST_NGINX_PG_CA" })))
            end
            ngx.say("dsn: ", try({ dsn = "postgres://rffi_tls:rffi_pw@127.0.0.1:15432/rffi?sslmode=require&sslrootcert=$TEST_NGINX_PG_CA" }))
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
prefer: ssl=true
require: ssl=true
verify-ca: ssl=true
verify-full: ssl=true
dsn: ssl=true
--- no_error_log
[error]



=== TEST 4: ssl_verify = false is the explicit way to accept an unverified server
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("require: ", try(pg_opts(PG_TLS, { sslmode = "require", ssl_verify = false })))
            ngx.say("dsn: ", try({ ssl_verify = false,
                dsn = "postgres://rffi_tls:rffi_pw@127.0.0.1:15432/rffi?sslmode=require" }))
            -- a wrong type is a programmer error, reported at new()
            ngx.say(select(2, require("resty.ffi.postgres").new(pg_opts(PG_TLS, { ssl_verify = "no" }))))
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
require: ssl=true
dsn: ssl=true
postgres: option ssl_verify must be a boolean, got string
--- no_error_log
[error]



=== TEST 5: the pgmoon surface: ssl = true verifies; ssl_verify = false does not
--- config
    location = /t {
        content_by_lua_block {
            local pgmoon = require("resty.ffi.postgres").pgmoon
            local function connect(extra)
                local cfg = { host = "127.0.0.1", port = 15432, user = "rffi_tls", password = "rffi_pw",
                              database = "rffi", connect_timeout = 3000 }
                for k, v in pairs(extra) do cfg[k] = v end
                local pg = pgmoon.new(cfg)
                local ok, err = pg:connect()
                if not ok then
                    return err:find("certificate signed by unknown authority", 1, true) and "refused" or err
                end
                return "ssl=" .. tostring(pg:query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[1].ssl)
            end
            ngx.say("ssl: ", connect{ ssl = true })
            ngx.say("ssl_required: ", connect{ ssl = true, ssl_required = true })
            ngx.say("ssl_verify = false: ", connect{ ssl = true, ssl_verify = false })
            ngx.say("sslrootcert: ", connect{ ssl = true, ssl_required = true, sslrootcert = "$TEST_NGINX_PG_CA" })
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
ssl: refused
ssl_required: refused
ssl_verify = false: ssl=true
sslrootcert: ssl=true
--- no_error_log
[error]



=== TEST 6: the DSN password never reaches an error string or the error log
--- config
    location = /t {
        content_by_lua_block {
            local pg = require "resty.ffi.postgres"
            local secret = "Zq7-pg-" .. "SECRET-9x"
            local cases = {
                { "wrong password, url", { dsn = "postgres://rffi:" .. secret .. "@127.0.0.1:15432/rffi?sslmode=disable" } },
                { "wrong password, keywords", { dsn = "host=127.0.0.1 port=15432 user=rffi dbname=rffi sslmode=disable password=" .. secret } },
                { "wrong password, table", { host = "127.0.0.1", port = 15432, user = "rffi", password = secret,
                                             database = "rffi", sslmode = "disable" } },
                { "unreachable", { host = "127.0.0.1", port = 1, user = "rffi", password = secret, database = "rffi" } },
                { "tls failure", { host = "127.0.0.1", port = 15432, user = "rffi_tls", password = secret,
                                   database = "rffi", sslmode = "require" } },
                { "tls failure, url", { dsn = "postgres://rffi_tls:" .. secret .. "@127.0.0.1:15432/rffi?sslmode=verify-full" } },
                { "bad url", { dsn = "postgres://rffi:" .. secret .. "@127.0.0.1:notaport/rffi" } },
                { "bad keywords", { dsn = "host=127.0.0.1 port=notaport password=" .. secret } },
                -- an unescaped "@" in the password: pgx's masking guessed wrong
                { "bad url, @ in the password", { dsn = "postgres://rffi:pw@" .. secret .. "@127.0.0.1:notaport/rffi" } },
                { "bad url, quote in the password", { host = "127.0.0.1", port = "notaport", password = "a'" .. secret } },
                { "bad option", { dsn = "postgres://rffi:" .. secret .. "@127.0.0.1:15432/rffi", sslmode = "bogus" } },
            }
            for _, c in ipairs(cases) do
                c[2].connect_timeout = 3000
                local db, err = pg.new(c[2])
                if db then
                    local v
                    v, err = db:query_value("SELECT 1")
                end
                -- what an application typically does with the error
                ngx.log(ngx.ERR, "pg case ", c[1], ": ", err)
                ngx.say(c[1], ": ", err ~= nil, " ", err and err:find(secret, 1, true) == nil)
            end
        }
    }
--- request
GET /t
--- timeout: 30
--- response_body
wrong password, url: true true
wrong password, keywords: true true
wrong password, table: true true
unreachable: true true
tls failure: true true
tls failure, url: true true
bad url: true true
bad keywords: true true
bad url, @ in the password: true true
bad url, quote in the password: true true
bad option: true true
--- error_log
pg case wrong password, url: postgres: acquiring a connection
pg case bad option: postgres: bad connection options
--- no_error_log
Zq7-pg-SECRET-9x



=== TEST 7: SQL in a parameter is stored and returned verbatim; the table survives
--- config
    location = /t {
        content_by_lua_block {
            local pg = require "resty.ffi.postgres"
            local db = assert(pg.new{ host = "127.0.0.1", port = 15432, user = "rffi", password = "rffi_pw",
                                      database = "rffi", sslmode = "disable" })
            assert(db:exec("DROP TABLE IF EXISTS sec_inject"))
            assert(db:exec("CREATE TABLE sec_inject (id int, v text)"))
            local evil = {
                "'; DROP TABLE sec_inject; --",
                "1); DROP TABLE sec_inject; --",
                "x' OR '1'='1",
                "$1 \\' \" ; -- /* */",
            }
            for i, v in ipairs(evil) do
                local ok, err = db:exec("INSERT INTO sec_inject (id, v) VALUES ($1, $2)", i, v)
                if not ok then ngx.say("insert ", i, ": ", err) end
            end
            -- in a WHERE clause: matches only the row that holds exactly that text
            ngx.say("matches: ", #db:query("SELECT id FROM sec_inject WHERE v = $1", "x' OR '1'='1"))
            local rows = db:query("SELECT id, v FROM sec_inject ORDER BY id")
            for i, r in ipairs(rows) do
                ngx.say(r.id, " ", r.v == evil[i] and "verbatim" or ("CHANGED: " .. r.v))
            end
            ngx.say("table exists: ", db:query_value("SELECT to_regclass('sec_inject') IS NOT NULL"))
            assert(db:exec("DROP TABLE sec_inject"))
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
matches: 1
1 verbatim
2 verbatim
3 verbatim
4 verbatim
table exists: true
--- no_error_log
[error]
