# vim:set ft= ts=4 sw=4 et fdm=marker:
# resty.ffi.postgres: prepared statements across requests, transactions,
# LISTEN/NOTIFY in a timer, COPY.

use lib '.';
use t::FFI;

need_backend('postgres', '127.0.0.1', 15432);
repeat_each(1);
# status + body per request, plus the error log check per block
plan tests => repeat_each() * (2 * 8 + 5);
no_shuffle();

our $HttpConfig = <<'_EOC_';
    init_by_lua_block {
        PG = { host = "127.0.0.1", port = 15432, user = "rffi", password = "rffi_pw",
               database = "rffi", sslmode = "disable", max_conns = 4 }
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $HttpConfig . ($block->http_config // ''));
});

run_tests();

__DATA__

=== TEST 1: prepared statements across requests
--- config
    location = /prep {
        content_by_lua_block {
            local db = assert(require("resty.ffi.postgres").new(PG))
            ngx.say(db:prepare("add", "SELECT $1::int + $2::int AS sum"))
            ngx.say(db:prepare("add", "SELECT $1::int + $2::int AS sum"))
        }
    }
    location = /exec {
        content_by_lua_block {
            local db = assert(require("resty.ffi.postgres").new(PG))
            local rows, err = db:execute("add", tonumber(ngx.var.arg_a), 1)
            ngx.say(rows and rows[1].sum or err)
        }
    }
--- request eval
["GET /prep", "GET /exec?a=1", "GET /exec?a=41"]
--- response_body eval
["true\ntrue\n", "2\n", "42\n"]
--- no_error_log
[error]



=== TEST 2: transactions commit, roll back, and finished ones refuse calls
--- config
    location = /t {
        content_by_lua_block {
            local db = assert(require("resty.ffi.postgres").new(PG))
            assert(db:simple_query("DROP TABLE IF EXISTS txt; CREATE TABLE txt (v int)"))
            local tx = assert(db:begin())
            assert(tx:exec("INSERT INTO txt VALUES (1)"))
            ngx.say("commit ", tx:commit())
            ngx.say(select(2, tx:query("SELECT 1")))
            tx = assert(db:begin({ isolation = "serializable" }))
            assert(tx:exec("INSERT INTO txt VALUES (2)"))
            ngx.say("rollback ", tx:rollback())
            local res, err = db:transaction(function(t)
                assert(t:exec("INSERT INTO txt VALUES (3)"))
                return t:query_value("SELECT count(*) FROM txt")
            end)
            ngx.say("transaction ", res, " ", err)
            res, err = db:transaction(function(t)
                assert(t:exec("INSERT INTO txt VALUES (4)"))
                return nil, "changed my mind"
            end)
            ngx.say("nil,err ", res, " ", err)
            res, err = db:transaction(function(t)
                assert(t:exec("INSERT INTO txt VALUES (5)"))
                error("boom")
            end)
            ngx.say("error ", res, " ", err ~= nil)
            res, err = db:transaction(function(t)
                return t:exec("INSERT INTO txt VALUES ('x')")
            end)
            ngx.say("sql error ", res, " ", err)
            ngx.say(db:query_value("SELECT array_agg(v ORDER BY v)::text FROM txt"))
        }
    }
--- request
GET /t
--- response_body
commit true
transaction is finished (committed)
rollback true
transaction 2 nil
nil,err nil changed my mind
error nil true
sql error nil ERROR: invalid input syntax for type integer: "x" (SQLSTATE 22P02)
{1,3}
--- no_error_log
[error]



=== TEST 3: an abandoned transaction is rolled back and its connection returned
--- config
    location = /abandon {
        content_by_lua_block {
            local db = assert(require("resty.ffi.postgres").new(PG))
            assert(db:simple_query("DROP TABLE IF EXISTS ab; CREATE TABLE ab (v int)"))
            local tx = assert(db:begin())
            assert(tx:exec("INSERT INTO ab VALUES (1)"))
            ngx.say("left open")
        }
    }
    location = /check {
        content_by_lua_block {
            collectgarbage()
            collectgarbage()
            local db = assert(require("resty.ffi.postgres").new(PG))
            local n
            for _ = 1, 50 do
                n = db:query_value("SELECT count(*) FROM pg_stat_activity WHERE usename = 'rffi' AND state LIKE 'idle in transaction%' AND application_name = ''")
                if n == 0 then break end
                ngx.sleep(0.05)
            end
            ngx.say("idle in transaction: ", n)
            ngx.say("rows: ", db:query_value("SELECT count(*) FROM ab"))
        }
    }
--- request eval
["GET /abandon", "GET /check"]
--- response_body eval
["left open\n", "idle in transaction: 0\nrows: 0\n"]
--- no_error_log
[error]



=== TEST 4: LISTEN in a timer loop started in init_worker gets NOTIFY from a request and from psql
--- http_config
    lua_shared_dict pgn 1m;
    init_worker_by_lua_block {
        local function loop(premature)
            if premature then return end
            local db = assert(require("resty.ffi.postgres").new(PG))
            local l, err = db:listen("events")
            if not l then
                ngx.log(ngx.ERR, "listen: ", err)
                return
            end
            ngx.shared.pgn:set("listening", true)
            while not ngx.worker.exiting() do
                local n, err = l:recv(1000)
                if n then
                    ngx.shared.pgn:set(n.payload, n.channel .. " " .. type(n.pid))
                elseif err ~= "timeout" then
                    ngx.log(ngx.WARN, "recv: ", err)
                end
            end
            l:close()
        end
        ngx.timer.at(0, loop)
    }
--- config
    location = /t {
        content_by_lua_block {
            local dict = ngx.shared.pgn
            local function wait(key)
                for _ = 1, 100 do
                    local v = dict:get(key)
                    if v then return v end
                    ngx.sleep(0.05)
                end
                return "nothing"
            end
            wait("listening")
            local db = assert(require("resty.ffi.postgres").new(PG))
            ngx.say(db:notify("events", "from a request"))
            ngx.say(wait("from a request"))
            os.execute("PGPASSWORD=rffi_pw psql -X -q -h 127.0.0.1 -p 15432 -U rffi -d rffi"
                       .. " -c \"NOTIFY events, 'from psql'\"")
            ngx.say(wait("from psql"))
        }
    }
--- request
GET /t
--- response_body
true
events number
events number
--- no_error_log
[error]



=== TEST 5: COPY 100k rows
--- config
    location = /t {
        content_by_lua_block {
            local db = assert(require("resty.ffi.postgres").new(PG))
            assert(db:simple_query("DROP TABLE IF EXISTS cp; CREATE TABLE cp (id int, name text, data bytea, tags text[])"))
            local rows = {}
            for i = 1, 100000 do
                rows[i] = { i, "name, \"" .. i .. "\"\n", "\0\1", { "a", "b,c" } }
            end
            local n, err = db:copy_from("cp", { "id", "name", "data", "tags" }, rows)
            ngx.say(n, " ", err)
            local r = db:query_one("SELECT count(*) AS c, sum(id) AS s FROM cp")
            ngx.say(r.c, " ", r.s)
            r = db:query_one("SELECT name, data, tags FROM cp WHERE id = 77")
            ngx.say(r.name == "name, \"77\"\n", " ", r.data == "\0\1", " ", r.tags[2])
        }
    }
--- request
GET /t
--- response_body
100000 nil
100000 5000050000
true true b,c
--- timeout: 30
--- no_error_log
[error]
