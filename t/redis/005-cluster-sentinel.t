# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# resty.ffi.redis with Redis Cluster (3 masters on 17001-17003) and with
# Sentinel (master name "mymaster", sentinels on 26379-26381): routing,
# a MOVED redirection after a slot moved, a failover.

use lib '.';
use t::FFI;

need_backend('redis cluster', '127.0.0.1', 17001);
need_backend('redis sentinel', '127.0.0.1', 26379);

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: cluster: keys spread over every master; pipelines across slots; a transaction in one slot
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local cli = assert(redis.new{ addrs = { "127.0.0.1:17001", "127.0.0.1:17002" }, timeout = 2000 })
            local owners = {}
            for i = 1, 30 do
                assert(cli:set("c1:" .. i, i) == "OK")
            end
            local slots = cli:cluster("slots")
            for i = 1, 30 do
                local slot = cli:cluster("keyslot", "c1:" .. i)
                for _, s in ipairs(slots) do
                    if slot >= s[1] and slot <= s[2] then owners[s[3][2]] = true end
                end
            end
            local n = 0
            for _ in pairs(owners) do n = n + 1 end
            ngx.say("masters used: ", n)
            local res = cli:pipeline(function(p)
                for i = 1, 30 do p:get("c1:" .. i) end
            end)
            ngx.say(#res, " ", res[1], " ", res[30])
            res = cli:transaction(function(t)
                t:set("{c1}a", 1)
                t:incr("{c1}a")
            end)
            ngx.say(res[1], " ", res[2])
            res = cli:pipeline(function(p)
                for i = 1, 30 do p:del("c1:" .. i) end
                p:del("{c1}a")
            end)
            ngx.say(#res)
            -- the compat surface reaches the cluster through connect() options
            local red = redis:new()
            assert(red:connect("127.0.0.1", 17003, { addrs = { "127.0.0.1:17003" } }))
            ngx.say(red:set("c1:x", "y"), " ", red:get("c1:x"), " ", red:del("c1:x"))
        }
    }
--- request
GET /t
--- response_body
masters used: 3
30 1 30
OK 2
31
OK y 1
--- no_error_log
[error]



=== TEST 2: cluster: a slot moves to another master; the client follows MOVED
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local cli = assert(redis.new{ addrs = { "127.0.0.1:17001" }, timeout = 2000 })
            local key = "c2:moving:" .. ngx.now()
            assert(cli:set(key, "v") == "OK")
            local slot = cli:cluster("keyslot", key)
            local src
            for _, s in ipairs(cli:cluster("slots")) do
                if slot >= s[1] and slot <= s[2] then src = s[3][2] end
            end
            local dst = src == 17001 and 17002 or 17001
            local function node(port)
                local r = redis:new()
                assert(r:connect("127.0.0.1", port))
                return r
            end
            local s, d = node(src), node(dst)
            local sid, did = s:cluster("myid"), d:cluster("myid")
            assert(d:cluster("setslot", slot, "importing", sid) == "OK")
            assert(s:cluster("setslot", slot, "migrating", did) == "OK")
            assert(s:migrate("127.0.0.1", dst, key, 0, 5000) == "OK")
            assert(d:cluster("setslot", slot, "node", did) == "OK")
            assert(s:cluster("setslot", slot, "node", did) == "OK")
            local res, err = s:get(key)
            ngx.say("old owner answers: ", tostring(res), " ", err:match("^MOVED %d+") and "MOVED" or err)
            -- the client's slot map still names the old owner
            ngx.say("through the cluster client: ", cli:get(key))
            ngx.say(cli:del(key))
        }
    }
--- request
GET /t
--- response_body
old owner answers: false MOVED
through the cluster client: v
1
--- no_error_log
[error]



=== TEST 3: sentinel: the client finds the master; after a failover it writes to the new one
--- config
    location = /t {
        content_by_lua_block {
            local redis = require "resty.ffi.redis"
            local cli = assert(redis.new{
                master_name = "mymaster",
                sentinel_addrs = { "127.0.0.1:26379", "127.0.0.1:26380", "127.0.0.1:26381" },
                timeout = 1000,
            })
            ngx.say(cli:set("s1", "before"), " ", cli:get("s1"))
            local before = cli:config("get", "port")[2]
            local sen = redis:new()
            sen:set_timeout(2000)
            assert(sen:connect("127.0.0.1", 26379))
            -- the replica may still be syncing: SENTINEL FAILOVER then says NOGOODSLAVE
            local ok, err
            for i = 1, 100 do
                ok, err = sen:sentinel("failover", "mymaster")
                if ok then break end
                ngx.sleep(0.1)
            end
            ngx.say("failover: ", ok or err)
            local switched, moved
            for i = 1, 150 do
                local addr = sen:sentinel("get-master-addr-by-name", "mymaster")
                if addr and addr[2] ~= before then
                    switched = true
                    local port = cli:config("get", "port")
                    if port and port[2] == addr[2] and cli:set("s1", "after") == "OK" then
                        moved = true
                        break
                    end
                end
                ngx.sleep(0.1)
            end
            ngx.say("sentinels switched: ", switched == true)
            ngx.say("client follows: ", moved == true, " ", cli:get("s1"))
            cli:del("s1")
        }
    }
--- request
GET /t
--- response_body
OK before
failover: OK
sentinels switched: true
client follows: true after
--- no_error_log
[error]
--- timeout: 30
