# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# resty.ffi.redis over TLS (redis-server with tls-port 17005, certificates
# made by t/servers/redis/ctl): verification on by default, CA file,
# client certificate, server name.

use lib '.';
use t::FFI;

need_backend('redis (tls)', '127.0.0.1', 17005);

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: lua-resty-redis's ssl option, with our CA; verification is on by default
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local tls = "$TEST_NGINX_ROOT/.run/redis/tls/"
            local red = redis:new()
            red:set_timeout(2000)
            local ok, err = red:connect("127.0.0.1", 17005, { ssl = true, max_retries = 0 })
            ngx.say("system roots: ", ok, " ", err:match("certificate signed by unknown authority"))
            ok, err = red:connect("127.0.0.1", 17005, { ssl = true, ssl_verify = false })
            ngx.say("ssl_verify = false: ", ok, " ", red:ping())
            ok, err = red:connect("127.0.0.1", 17005, { tls = { ca_file = tls .. "ca.crt" } })
            ngx.say("ca_file: ", ok, " ", red:set("tls:k", "v"), " ", red:get("tls:k"), " ", red:del("tls:k"))
            ok, err = red:connect("127.0.0.1", 17005, { max_retries = 0,
                tls = { ca_file = tls .. "ca.crt", server_name = "redis.example" } })
            ngx.say("wrong server name: ", ok, " ", err:match("certificate is valid for") and "refused")
        }
    }
--- request
GET /t
--- response_body
system roots: nil certificate signed by unknown authority
ssl_verify = false: 1 PONG
ca_file: 1 OK v 1
wrong server name: nil refused
--- no_error_log
[error]



=== TEST 2: native client with a client certificate
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local tls = "$TEST_NGINX_ROOT/.run/redis/tls/"
            local cli = assert(redis.new{
                addr = "127.0.0.1:17005",
                tls = { ca_file = tls .. "ca.crt", cert_file = tls .. "client.crt", key_file = tls .. "client.key" },
                timeout = 2000,
            })
            ngx.say(cli:ping())
            local bad, err = redis.new{ addr = "127.0.0.1:17005", tls = { cert_file = tls .. "client.crt" } }
            ngx.say(tostring(bad), " ", err)
        }
    }
--- request
GET /t
--- response_body
PONG
nil redis: options tls.cert_file and tls.key_file go together
--- no_error_log
[error]
