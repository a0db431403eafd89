# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# resty.ffi.kafka security defaults: TLS verifies the broker (kfake's TLS
# cluster on 19095, certificate from its own test CA), SASL secrets never
# reach the error log or an error string (SASL cluster on 19096), and keys,
# values and headers with NUL bytes and CRLF travel verbatim.
# Needs t/servers/kafka/ctl start (it runs the three clusters).

use lib '.';
use t::FFI;

need_backend('kafka', '127.0.0.1', 19092);
need_backend('kafka (tls)', '127.0.0.1', 19095);
need_backend('kafka (sasl)', '127.0.0.1', 19096);

repeat_each(1);
no_shuffle();
plan tests => repeat_each() * (blocks() * 3 + 4);

$ENV{TEST_NGINX_KAFKA_CA} = "$t::FFI::Root/.run/kafka/tls/ca.crt";

our $HttpConfig = <<'_EOC_';
    init_by_lua_block {
        TLS_BROKER = { "127.0.0.1:19095" }
        SASL_BROKER = { "127.0.0.1:19096" }
        -- send(opts): "sent", or the start of the error
        function send(opts)
            local kafka = require "resty.ffi.kafka"
            opts.max_attempts = 1
            opts.request_timeout = 3000
            opts.connect_timeout = 2000
            local p, err = kafka.producer(opts)
            if not p then
                return "producer: " .. err
            end
            local ok
            ok, err = p:send("rffi-sec", "k", "v")
            return ok and "sent" or err
        end
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: TLS verifies the broker by default: a broker signed by an unknown CA is refused
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local function verdict(err)
                if err == "sent" then return err end
                return err:find("certificate signed by unknown authority", 1, true)
                       and "refused: unknown authority" or ("other error: " .. err)
            end
            ngx.say("producer, tls = true: ", verdict(send{ brokers = TLS_BROKER, tls = true }))
            ngx.say("producer, tls = {}: ", verdict(send{ brokers = TLS_BROKER, tls = { server_name = "localhost" } }))
            local topics, err = kafka.list_topics{ brokers = TLS_BROKER, tls = true, request_timeout = 3000 }
            ngx.say("admin, tls = true: ", topics and "listed" or verdict(err))
            local c = assert(kafka.consumer{ brokers = TLS_BROKER, tls = true, topic = "rffi-sec",
                                             partition = 0, offset = 0 })
            local m
            m, err = c:fetch(3000)
            ngx.say("consumer, tls = true: ", m and "fetched" or verdict(err))
            c:close()
        }
    }
--- request
GET /t
--- timeout: 30
--- response_body
producer, tls = true: refused: unknown authority
producer, tls = {}: refused: unknown authority
admin, tls = true: refused: unknown authority
consumer, tls = true: refused: unknown authority
--- no_error_log
[error]



=== TEST 2: with the CA (ca_file) the TLS broker works; verify = false is the explicit insecure way
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            ngx.say("ca_file: ", send{ brokers = TLS_BROKER, tls = { ca_file = "$TEST_NGINX_KAFKA_CA" } })
            ngx.say("verify = false: ", send{ brokers = TLS_BROKER, tls = { verify = false } })
            local c = assert(kafka.consumer{ brokers = TLS_BROKER, topic = "rffi-sec", partition = 0, offset = 0,
                                             tls = { ca_file = "$TEST_NGINX_KAFKA_CA" } })
            local m, err = c:fetch(5000)
            ngx.say("consumer with ca_file: ", m and m.value or err)
            c:close()
            local wrong = send{ brokers = TLS_BROKER, tls = { ca_file = "$TEST_NGINX_KAFKA_CA", server_name = "kafka.example" } }
            ngx.say("wrong server name: ", wrong:find("certificate is valid for", 1, true) and "refused" or wrong)
        }
    }
--- request
GET /t
--- timeout: 30
--- response_body
ca_file: sent
verify = false: sent
consumer with ca_file: v
wrong server name: refused
--- no_error_log
[error]



=== TEST 3: SASL PLAIN and SCRAM: right secrets work; a wrong one fails without showing it
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local secret = "Kx5-sasl-" .. "WRONG-7q"
            for _, u in ipairs{ { "PLAIN", "rffi-plain" }, { "SCRAM-SHA-256", "rffi-scram256" },
                                { "SCRAM-SHA-512", "rffi-scram512" } } do
                local ok = send{ brokers = SASL_BROKER, sasl = { mechanism = u[1], user = u[2], password = "rffi-sasl-pw" } }
                local bad = send{ brokers = SASL_BROKER, sasl = { mechanism = u[1], user = u[2], password = secret } }
                ngx.log(ngx.ERR, "sasl case ", u[1], ": ", bad)
                ngx.say(u[1], ": ", ok, ", wrong password: ", bad ~= "sent", " ",
                        not bad:find(secret, 1, true) and not bad:find("rffi-sasl-pw", 1, true))
            end
            local none = send{ brokers = SASL_BROKER }
            ngx.say("no sasl: ", none ~= "sent")
            -- SASL against a broker that does not do SASL
            local plain = send{ brokers = { "127.0.0.1:19092" },
                                sasl = { mechanism = "PLAIN", user = "rffi-plain", password = secret } }
            ngx.log(ngx.ERR, "sasl case non-sasl broker: ", plain)
            ngx.say("non-sasl broker: ", plain ~= "sent", " ", not plain:find(secret, 1, true))
        }
    }
--- request
GET /t
--- timeout: 40
--- response_body
PLAIN: sent, wrong password: true true
SCRAM-SHA-256: sent, wrong password: true true
SCRAM-SHA-512: sent, wrong password: true true
no sasl: true
non-sasl broker: true true
--- error_log
sasl case SCRAM-SHA-512:
--- no_error_log
Kx5-sasl-WRONG-7q
rffi-sasl-pw



=== TEST 4: send_async failures (bad SASL secret, TLS failure) are logged by the module without the secret
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local secret = "Kx5-sasl-" .. "WRONG-7q"
            local common = { max_attempts = 1, delivery_timeout = 1000, error_handler_interval = 100,
                             connect_timeout = 1000, request_timeout = 1000, async_linger = 1 }
            local function opts(extra)
                local o = {}
                for k, v in pairs(common) do o[k] = v end
                for k, v in pairs(extra) do o[k] = v end
                return o
            end
            local ps = {
                assert(kafka.producer(opts{ brokers = SASL_BROKER,
                    sasl = { mechanism = "SCRAM-SHA-256", user = "rffi-scram256", password = secret } })),
                assert(kafka.producer(opts{ brokers = TLS_BROKER, tls = true,
                    sasl = { mechanism = "PLAIN", user = "rffi-plain", password = secret } })),
            }
            for _, p in ipairs(ps) do
                assert(p:send_async("rffi-sec", nil, "async"))
            end
            -- wait until both failures were counted, then for the handler's log line
            for _ = 1, 100 do
                if ps[1]:stats().failed > 0 and ps[2]:stats().failed > 0 then break end
                ngx.sleep(0.1)
            end
            ngx.sleep(0.5)
            ngx.say("failed: ", ps[1]:stats().failed, " ", ps[2]:stats().failed)
        }
    }
--- request
GET /t
--- timeout: 30
--- response_body
failed: 1 1
--- error_log
resty.ffi.kafka: 1 messages failed, topic rffi-sec
--- no_error_log
Kx5-sasl-WRONG-7q
rffi-sasl-pw



=== TEST 5: keys, values and headers with NUL bytes and CRLF round-trip verbatim
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local brokers = { "127.0.0.1:19092", "127.0.0.1:19093", "127.0.0.1:19094" }
            local topic = "sec-" .. ngx.worker.pid() .. "-" .. ngx.now() * 1000
            assert(kafka.create_topic({ brokers = brokers }, topic, 1, 1))
            local key = "k\0ey\r\nSET injected 1\r\n"
            local value = "\0\r\n\r\nv\0\255\r"
            local headers = { ["x-h\r\nx-evil"] = "a\r\nb\0c" }
            local p = assert(kafka.producer{ brokers = brokers })
            assert(p:send(topic, key, value, headers))
            local c = assert(kafka.consumer{ brokers = brokers, topic = topic, partition = 0, offset = 0 })
            local m = assert(c:fetch(10000))
            c:close()
            ngx.say("key: ", m.key == key, " value: ", m.value == value)
            local n = 0
            for k, v in pairs(m.headers) do
                n = n + 1
                ngx.say("header: ", k == "x-h\r\nx-evil", " ", v == "a\r\nb\0c")
            end
            ngx.say("headers: ", n)
            assert(kafka.delete_topic({ brokers = brokers }, topic))
        }
    }
--- request
GET /t
--- timeout: 30
--- response_body
key: true value: true
header: true true
headers: 1
--- no_error_log
[error]
