# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# resty.ffi.redis security defaults: TLS verification with no CA
# configured (the native client; t/redis/007-tls.t covers connect()),
# passwords never reach an error string or the error log, and CRLF in keys
# and values stays data (no command injection).

use lib '.';
use t::FFI;

need_backend('redis', '127.0.0.1', 16379);
need_backend('redis (password)', '127.0.0.1', 16380);
need_backend('redis (tls)', '127.0.0.1', 17005);

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3 + 2);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: the native client verifies TLS by default: no CA configured means a refused server
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local tls = "$TEST_NGINX_ROOT/.run/redis/tls/"
            local function try(opts)
                opts.addr = "127.0.0.1:17005"
                opts.max_retries = 0
                opts.timeout = 2000
                local cli = assert(redis.new(opts))
                local res, err = cli:ping()
                if res then return res end
                return err:find("certificate signed by unknown authority", 1, true)
                       and "refused: unknown authority" or ("other error: " .. err)
            end
            ngx.say("ssl = true: ", try{ ssl = true })
            ngx.say("tls = true: ", try{ tls = true })
            ngx.say("tls = { server_name }: ", try{ tls = { server_name = "localhost" } })
            ngx.say("tls = { ca_file }: ", try{ tls = { ca_file = tls .. "ca.crt" } })
            ngx.say("tls = { verify = false }: ", try{ tls = { verify = false } })
            ngx.say("ssl_verify = false: ", try{ ssl = true, ssl_verify = false })
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
ssl = true: refused: unknown authority
tls = true: refused: unknown authority
tls = { server_name }: refused: unknown authority
tls = { ca_file }: PONG
tls = { verify = false }: PONG
ssl_verify = false: PONG
--- no_error_log
[error]



=== TEST 2: passwords never reach an error string or the error log
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local secret = "Rv3-redis-" .. "WRONG-5k"
            local function shows(err)
                err = tostring(err)
                return err:find(secret, 1, true) ~= nil or err:find("rffi-secret", 1, true) ~= nil
            end
            local function record(name, res, err)
                -- what an application typically does with the error
                ngx.log(ngx.ERR, "redis case ", name, ": ", tostring(err))
                ngx.say(name, ": failed ", res == nil or res == false, ", shows a password ", shows(err))
            end
            local function compat(port, opts)
                local red = redis:new()
                red:set_timeout(2000)
                local ok, err = red:connect("127.0.0.1", port, opts)
                if not ok then return nil, err end
                return red:get("sec:x")
            end
            -- lua-resty-redis surface
            local red = redis:new()
            red:set_timeout(2000)
            assert(red:connect("127.0.0.1", 16380))
            record("auth, wrong password", red:auth(secret))
            ngx.say("auth, right password: ", red:auth("rffi-secret"))
            record("connect option, wrong password", compat(16380, { password = secret }))
            record("connect, unreachable", compat(1, { password = secret, max_retries = 0 }))
            record("connect, tls failure", compat(17005, { ssl = true, password = secret, max_retries = 0 }))
            -- in a pipeline AUTH is sent as a command
            red = redis:new()
            red:set_timeout(2000)
            assert(red:connect("127.0.0.1", 16380, { password = "rffi-secret" }))
            red:init_pipeline()
            red:auth(secret)
            local res = assert(red:commit_pipeline())
            record("auth in a pipeline", res[1][1], res[1][2])
            -- native surface
            for _, c in ipairs{
                { "native, wrong password", { addr = "127.0.0.1:16380", password = secret } },
                { "native, username and password", { addr = "127.0.0.1:16380", username = "nobody", password = secret } },
                { "native, unreachable", { addr = "127.0.0.1:1", password = secret } },
                { "native, tls failure", { addr = "127.0.0.1:17005", tls = true, password = secret } },
            } do
                c[2].max_retries = 0
                c[2].timeout = 2000
                local cli = assert(redis.new(c[2]))
                record(c[1], cli:ping())
            end
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
auth, wrong password: failed true, shows a password false
auth, right password: OK
connect option, wrong password: failed true, shows a password false
connect, unreachable: failed true, shows a password false
connect, tls failure: failed true, shows a password false
auth in a pipeline: failed true, shows a password false
native, wrong password: failed true, shows a password false
native, username and password: failed true, shows a password false
native, unreachable: failed true, shows a password false
native, tls failure: failed true, shows a password false
--- error_log
redis case native, tls failure:
--- no_error_log
Rv3-redis-WRONG-5k
rffi-secret



=== TEST 3: CRLF in keys and values is data: stored verbatim, no command is injected
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local red = redis:new()
            red:set_timeout(2000)
            assert(red:connect("127.0.0.1", 16379))
            -- keys of this run only: other suites share the server
            local p = "sec:" .. ngx.worker.pid() .. ":" .. ngx.now() .. ":"
            red:del("injected", p .. "injected")
            local evil = "a\r\nSET injected 1\r\n"
            local key = p .. evil .. "*3\r\n$3\r\nSET\r\n$" .. #(p .. "injected") .. "\r\n" .. p .. "injected\r\n$1\r\n1\r\n"
            ngx.say("set value: ", red:set(p .. "crlf", evil))
            ngx.say("set key: ", red:set(key, evil .. "\0"))
            ngx.say("value verbatim: ", red:get(p .. "crlf") == evil)
            ngx.say("key verbatim: ", red:get(key) == evil .. "\0")
            ngx.say("hash field: ", red:hset(p .. "h", evil, evil), " ", red:hget(p .. "h", evil) == evil)
            red:init_pipeline()
            red:set(p .. "p", evil)
            red:get(p .. "p")
            local res = red:commit_pipeline()
            ngx.say("pipeline: ", res[1], " ", res[2] == evil)
            local cli = assert(redis.new{ addr = "127.0.0.1:16379" })
            ngx.say("native: ", cli:set(p .. "n " .. evil, evil), " ", cli:get(p .. "n " .. evil) == evil)
            ngx.say("injected keys: ", red:exists("injected", p .. "injected"))
            local keys = red:keys(p .. "*")
            ngx.say("keys: ", #keys)
            red:del(unpack(keys))
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
set value: OK
set key: OK
value verbatim: true
key verbatim: true
hash field: 1 true
pipeline: OK true
native: OK true
injected keys: 0
keys: 5
--- no_error_log
[error]
