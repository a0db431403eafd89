# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# Broker outages: sync send fails within its timeout; send_async fills its
# bounded buffer, says "buffer full", then drains when the brokers return;
# messages that cannot be delivered in time reach the error handler
# (lua-resty-kafka's error_handle too).
# Needs the kfake cluster: t/servers/kafka/ctl start (its control socket
# takes the brokers down and up).

use lib '.';
use t::FFI;

need_backend('kafka', '127.0.0.1', 19092);

repeat_each(1);
no_shuffle();
plan tests => repeat_each() * (blocks() * 3);

our $HttpConfig = <<'_EOC_';
    lua_shared_dict out 1m;
    init_by_lua_block {
        BROKERS = { "127.0.0.1:19092", "127.0.0.1:19093", "127.0.0.1:19094" }
        function fresh_topic(kafka, parts)
            local name = "o-" .. ngx.worker.pid() .. "-" .. ngx.now() * 1000 .. "-" .. math.random(1e6)
            assert(kafka.create_topic({ brokers = BROKERS }, name, parts or 1, 1))
            return name
        end
        -- brokers("pause" | "resume"): every broker down / up, data kept
        function brokers(action)
            local sock = ngx.socket.tcp()
            local run = os.getenv("RFFI_RUN") or (CTL_ROOT .. "/.run")
            assert(sock:connect("unix:" .. run .. "/kafka/control.sock"))
            assert(sock:send("POST /" .. action .. " HTTP/1.0\r\nHost: k\r\n\r\n"))
            local res = sock:receive("*a")
            sock:close()
            assert(res and res:find(" 200 "), "control: " .. tostring(res))
        end
        function count(kafka, topic)
            -- (right after an outage a broker may answer one call with an error)
            local offs, err
            for _ = 1, 20 do
                offs, err = kafka.offsets({ brokers = BROKERS }, topic)
                if offs then break end
                ngx.sleep(0.2)
            end
            assert(offs, err)
            local n = 0
            for _, o in ipairs(offs) do n = n + o.last - o.first end
            return n
        end
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    my $init = "CTL_ROOT = '$t::FFI::Root'";
    $block->set_value('http_config', $block->http_config . "    init_worker_by_lua_block { $init }\n");
});

run_tests();

__DATA__

=== TEST 1: brokers down: sync send fails within its timeout; async buffer fills to its bound, then drains
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local topic = fresh_topic(kafka, 2)
            local p = assert(kafka.producer{ brokers = BROKERS, max_buffering = 300,
                                             request_timeout = 1000, async_chunk = 50 })
            assert(p:send(topic, nil, "before"))
            brokers("pause")
            local ok, err = pcall(function()
                ngx.update_time()
                local t0 = ngx.now()
                local sent, serr = p:send(topic, nil, "during")
                ngx.update_time()
                local took = ngx.now() - t0
                ngx.say("sync send: ", sent, " ", serr, ", within 1.5 s: ", took < 1.5)
                local accepted, first_err = 0
                for i = 1, 1000 do
                    local ok, aerr = p:send_async(topic, nil, "m" .. i)
                    if not ok then first_err = aerr break end
                    accepted = accepted + 1
                end
                ngx.say("async accepted ", accepted, ", then: ", first_err)
                ngx.sleep(1)
                ngx.say("still buffered: ", p:buffered())
            end)
            brokers("resume")
            if not ok then error(err) end
            ngx.say("flush: ", p:flush(30000))
            ngx.say("buffered after: ", p:buffered())
            ngx.say("in the topic: ", count(kafka, topic))
        }
    }
--- request
GET /t
--- response_body_like
sync send: nil timeout, within 1.5 s: true
async accepted 300, then: buffer full
still buffered: 300
flush: true
buffered after: 0
in the topic: 30[12]
--- no_error_log
[error]
--- timeout: 60



=== TEST 2: messages undeliverable within delivery_timeout reach error_handler, and lua-resty-kafka's error_handle
--- http_config eval: $::HttpConfig
--- config
    location = /t {
        content_by_lua_block {
            local kafka = require "resty.ffi.kafka"
            local topic = fresh_topic(kafka, 1)
            local got = {}
            local p = assert(kafka.producer{ brokers = BROKERS, delivery_timeout = 500,
                max_attempts = 2, backoff_min = 50, backoff_max = 100, request_timeout = 300,
                error_handler_interval = 100,
                error_handler = function(failures)
                    for _, f in ipairs(failures) do
                        got[#got + 1] = f.topic == topic and f.value .. "/" .. tostring(f.retryable)
                    end
                end })
            local compat_calls = {}
            local producer = require "resty.ffi.kafka"
            local rk = assert(producer:new({ { host = "127.0.0.1", port = 19092 } }, {
                producer_type = "async", request_timeout = 300, max_retry = 1, retry_backoff = 50,
                error_handle = function(t, partition_id, queue, index, err, retryable)
                    compat_calls[#compat_calls + 1] = (t == topic) and (index .. ":" .. queue[1] .. "=" .. queue[2])
                end,
                delivery_timeout = 500, error_handler_interval = 100 }))
            assert(p:send(topic, nil, "warm"))
            assert(rk:send(topic, nil, "warm"))
            assert(rk:flush(5000))
            brokers("pause")
            local ok, err = pcall(function()
                for i = 1, 3 do assert(p:send_async(topic, nil, "lost" .. i)) end
                assert(rk:send(topic, "key", "compat"))
                local deadline = ngx.now() + 15
                while (#got < 3 or #compat_calls < 1) and ngx.now() < deadline do ngx.sleep(0.1) end
            end)
            brokers("resume")
            if not ok then error(err) end
            table.sort(got)
            ngx.say("error_handler: ", table.concat(got, " "))
            ngx.say("error_handle: ", table.concat(compat_calls, " "))
            local st = p:stats()
            ngx.say("failed ", st.async_failed, ", buffered ", st.buffered)
        }
    }
--- request
GET /t
--- response_body
error_handler: lost1/true lost2/true lost3/true
error_handle: 2:key=compat
failed 3, buffered 0
--- no_error_log
[error]
--- timeout: 60
