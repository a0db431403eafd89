# vim:set ft= ts=4 sw=4 et fdm=marker:
# resty.ffi.postgres: queries, parameters and types both ways.

use lib '.';
use t::FFI;

need_backend('postgres', '127.0.0.1', 15432);
repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();

our $HttpConfig = <<'_EOC_';
    init_by_lua_block {
        PG = { host = "127.0.0.1", port = 15432, user = "rffi", password = "rffi_pw",
               database = "rffi", sslmode = "disable", max_conns = 4 }
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $HttpConfig . ($block->http_config // ''))
        unless ($block->http_config // '') =~ /PG = /;
});

run_tests();

__DATA__

=== TEST 1: SELECT with parameters: rows keyed by column, columns, command
--- config
    location = /t {
        content_by_lua_block {
            local pg = require "resty.ffi.postgres"
            local db = assert(pg.new(PG))
            local rows, err = db:query("SELECT $1::int AS a, $2::text AS b", 42, "x")
            if not rows then ngx.say("err: ", err) return end
            ngx.say(#rows, " ", rows[1].a, " ", rows[1].b, " ", rows.command, " ", rows.affected)
            ngx.say(rows.columns[1].name, ":", rows.columns[1].type, " ", rows.columns[2].name, ":", rows.columns[2].type)
            ngx.say(db:query_value("SELECT 1 + $1::int", 1))
            local r = db:query_one("SELECT 'a' AS x, NULL::int AS y")
            ngx.say(r.x, " ", r.y == ngx.null)
            ngx.say(db:query_one("SELECT 1 WHERE false"))
            -- rows of no columns are counted, as empty tables
            local empty = assert(db:query("SELECT FROM generate_series(1, 3)"))
            ngx.say(#empty, " rows, ", #empty.columns, " columns, first row empty: ", next(empty[1]) == nil)
            -- a repeated column name keeps the last column's value
            ngx.say(db:query_one("SELECT 1 AS a, 2 AS a").a)
        }
    }
--- request
GET /t
--- response_body
1 42 x SELECT 1 1
a:int4 b:text
2
a true
nil
3 rows, 0 columns, first row empty: true
2
--- no_error_log
[error]



=== TEST 2: types from PostgreSQL
--- config
    location = /t {
        content_by_lua_block {
            local pg = require "resty.ffi.postgres"
            local db = assert(pg.new(PG))
            local r, err = db:query_one([=[SELECT true AS b, 32767::int2 AS i2, 2147483647 AS i4,
                9223372036854775807::int8 AS i8, 9007199254740993::int8 AS big, 42::int8 AS small,
                1.5::float4 AS f4, 0.1::float8 AS f8, 123456789012345678901234567890.10::numeric AS n,
                'héllo ✓'::text AS t, '\x00ff41'::bytea AS ba, '{"a": [1, 2]}'::jsonb AS j,
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '2024-02-29'::date AS d,
                '2024-02-29 13:14:15.123456'::timestamp AS ts,
                '2024-02-29 13:14:15+00'::timestamptz AS tstz, '1 day 02:03:04'::interval AS iv,
                ARRAY[1, NULL, 3] AS arr, ARRAY[['a','b'],['c','d"']] AS arr2,
                '192.168.0.1'::inet AS ip, NULL::text AS nul, point(1,2) AS pt]=])
            if not r then ngx.say(err) return end
            ngx.say(type(r.b), " ", r.b, " ", r.i2, " ", r.i4)
            ngx.say(tostring(r.i8), " ", tostring(r.big), " ", type(r.small), " ", r.small)
            ngx.say(r.f4, " ", r.f8, " ", r.n)
            ngx.say(r.t, " ", #r.ba, " ", r.ba:byte(1), r.ba:byte(2), r.ba:sub(3))
            ngx.say(r.j, " ", r.u, " ", r.d, " ", r.ts)
            ngx.say(r.tstz, " ", r.iv)
            ngx.say(#r.arr, " ", r.arr[1], " ", r.arr[2] == ngx.null, " ", r.arr[3], " ", r.arr2[2][2])
            ngx.say(r.ip, " ", r.nul == ngx.null, " ", r.pt)
        }
    }
--- request
GET /t
--- response_body
boolean true 32767 2147483647
9223372036854775807LL 9007199254740993LL number 42
1.5 0.1 123456789012345678901234567890.10
héllo ✓ 3 0255A
{"a": [1, 2]} a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 2024-02-29 2024-02-29T13:14:15.123456
2024-02-29T13:14:15+00 1 day 02:03:04
3 1 true 3 d"
192.168.0.1 true (1,2)
--- no_error_log
[error]



=== TEST 3: types to PostgreSQL (exact int64, binary bytea, arrays, json, NULL)
--- config
    location = /t {
        content_by_lua_block {
            local ffi = require "ffi"
            local pg = require "resty.ffi.postgres"
            local db = assert(pg.new(PG))
            local function v(sql, ...)
                local x, err = db:query_value(sql, ...)
                if err then return "ERR " .. err end
                return x
            end
            ngx.say(v("SELECT $1::int8::text", ffi.new("int64_t", 9007199254740993LL)))
            ngx.say(v("SELECT $1::int8::text", "9223372036854775807"))
            ngx.say(v("SELECT $1::numeric::text", "3.14159265358979323846264338327950288"))
            ngx.say(v("SELECT length($1::bytea)", "a\0b\\x'"))
            ngx.say(v("SELECT encode($1::bytea, 'hex')", "\0\1\255"))
            ngx.say(v("SELECT $1::int[]::text", { 1, ngx.null, 3 }))
            ngx.say(v("SELECT $1::text[]::text", { 'a"b', "c,d", "" }))
            ngx.say(v("SELECT $1::int[][]::text", { { 1, 2 }, { 3, 4 } }))
            ngx.say(v("SELECT $1::jsonb->>'k'", { k = "v" }))
            ngx.say(v("SELECT $1::text IS NULL", ngx.null))
            ngx.say(v("SELECT $1::bool", true))
            ngx.say(v("SELECT $1::float8 * 2", 1.25))
            ngx.say(v("SELECT $1::date + 1", "2024-02-28"))
            ngx.say(v("SELECT $1::int", 3.5))
        }
    }
--- request
GET /t
--- response_body
9007199254740993
9223372036854775807
3.14159265358979323846264338327950288
6
0001ff
{1,NULL,3}
{"a\"b","c,d",""}
{{1,2},{3,4}}
v
true
true
2.5
2024-02-29
ERR ERROR: invalid input syntax for type integer: "3.5" (SQLSTATE 22P02)
--- no_error_log
[error]



=== TEST 4: quotes, unicode and injection attempts stay data
--- config
    location = /t {
        content_by_lua_block {
            local pg = require "resty.ffi.postgres"
            local db = assert(pg.new(PG))
            assert(db:simple_query("DROP TABLE IF EXISTS inj; CREATE TABLE inj (s text)"))
            local evil = { "'; DROP TABLE inj; --", "\" OR 1=1 --", "Ünïcødé ✓ 日本", "$1", "\\'" }
            for _, s in ipairs(evil) do
                assert(db:exec("INSERT INTO inj VALUES ($1)", s))
            end
            local rows = assert(db:query("SELECT s FROM inj"))
            for i, r in ipairs(rows) do
                ngx.say(r.s == evil[i])
            end
            ngx.say(pg.escape_literal("it's"), " ", pg.escape_identifier('a"b'))
        }
    }
--- request
GET /t
--- response_body
true
true
true
true
true
'it''s' "a""b"
--- no_error_log
[error]



=== TEST 5: errors carry SQLSTATE and a detail table
--- config
    location = /t {
        content_by_lua_block {
            local pg = require "resty.ffi.postgres"
            local db = assert(pg.new(PG))
            assert(db:simple_query("DROP TABLE IF EXISTS uq; CREATE TABLE uq (id int PRIMARY KEY)"))
            assert(db:exec("INSERT INTO uq VALUES (1)"))
            local n, err, detail = db:exec("INSERT INTO uq VALUES (1)")
            ngx.say(n, " ", err)
            ngx.say(detail.code, " ", detail.constraint, " ", detail.detail)
            local _, err2 = db:query("SELEC 1")
            ngx.say(err2)
        }
    }
--- request
GET /t
--- response_body
nil ERROR: duplicate key value violates unique constraint "uq_pkey" (SQLSTATE 23505)
23505 uq_pkey Key (id)=(1) already exists.
ERROR: syntax error at or near "SELEC" (SQLSTATE 42601)
--- no_error_log
[error]



=== TEST 6: exec, batch and multi-statement simple_query
--- config
    location = /t {
        content_by_lua_block {
            local pg = require "resty.ffi.postgres"
            local db = assert(pg.new(PG))
            assert(db:simple_query("DROP TABLE IF EXISTS bt; CREATE TABLE bt (id int, v text)"))
            local n, err, command = db:exec("INSERT INTO bt VALUES (1, 'a'), (2, 'b')")
            ngx.say(n, " ", err, " ", command)
            local res, err = db:batch({
                { "INSERT INTO bt VALUES ($1, $2)", 3, "c" },
                { "UPDATE bt SET v = upper(v) WHERE id < $1", 3 },
                { "SELECT id, v FROM bt ORDER BY id" },
            })
            if not res then ngx.say(err) return end
            ngx.say(#res, " ", res[1].affected, " ", res[2].command, " ", #res[3], " ", res[3][3].v)
            local all = assert(db:simple_query("SELECT 1 AS a; SELECT 'x' AS b"))
            ngx.say(#all, " ", all[1][1].a, " ", all[2][1].b)
        }
    }
--- request
GET /t
--- response_body
2 nil INSERT 0 2
3 1 UPDATE 2 3 c
2 1 x
--- no_error_log
[error]



=== TEST 7: pgmoon-compatible surface
--- config
    location = /t {
        content_by_lua_block {
            local pgmoon = require("resty.ffi.postgres").pgmoon
            local pg = pgmoon.new({ host = "127.0.0.1", port = 15432, database = "rffi",
                                    user = "rffi", password = "rffi_pw" })
            assert(pg:connect())
            assert(pg:query("DROP TABLE IF EXISTS pm; CREATE TABLE pm (id int, v text)"))
            local res = assert(pg:query("INSERT INTO pm VALUES (1, " .. pg:escape_literal("o'k") .. ")"))
            ngx.say(res.affected_rows)
            res = assert(pg:query("SELECT id, v, NULL AS n FROM " .. pg:escape_identifier("pm")))
            ngx.say(#res, " ", res[1].id, " ", res[1].v, " ", res[1].n)
            local r2, n = pg:query("SELECT 1 AS a; SELECT 2 AS b")
            ngx.say(n, " ", r2[2][1].b)
            local ok, err = pg:query("SELECT nope")
            ngx.say(ok, " ", err)
            ngx.say(pg:keepalive(), " ", pg:disconnect())
        }
    }
--- request
GET /t
--- response_body
1
1 1 o'k nil
2 2
nil ERROR: column "nope" does not exist (SQLSTATE 42703)
true true
--- no_error_log
[error]



=== TEST 8: a non-string sql raises an error naming the argument, at the caller's line; a failure keeps its shape
--- config
    location = /t {
        content_by_lua_block {
            local db = assert(require("resty.ffi.postgres").new(PG))
            for _, m in ipairs({ "query", "query_one", "query_value", "exec", "simple_query" }) do
                local ok, err = pcall(function() local r = db[m](db, 42) return r end)
                ngx.say(m, ": ", (err:gsub("^content_by_lua%(nginx%.conf:%d+%):%d+: ", "here: ")))
            end
            -- a server error comes back as nil, message, detail: three values
            ngx.say(select("#", db:query("SELECT nope")), " ", select("#", db:exec("SELECT nope")))
            local _, err, detail = db:query_one("SELECT nope")
            ngx.say(err, " / ", detail and detail.code)
            -- no row: query_one and query_value return a lone nil
            ngx.say(select("#", db:query_one("SELECT 1 WHERE false")), " ",
                    select("#", db:query_value("SELECT 1 WHERE false")))
            -- exec: the count, nil, the command tag
            ngx.say(db:exec("SELECT 1"))
        }
    }
--- request
GET /t
--- response_body
query: here: resty.ffi.postgres: query: argument #1 (sql) must be a string, got number
query_one: here: resty.ffi.postgres: query_one: argument #1 (sql) must be a string, got number
query_value: here: resty.ffi.postgres: query_value: argument #1 (sql) must be a string, got number
exec: here: resty.ffi.postgres: exec: argument #1 (sql) must be a string, got number
simple_query: here: resty.ffi.postgres: simple_query: argument #1 (sql) must be a string, got number
3 3
ERROR: column "nope" does not exist (SQLSTATE 42703) / 42703
1 1
1nilSELECT 1
--- no_error_log
[error]
