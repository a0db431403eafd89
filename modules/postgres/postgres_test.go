package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// The tests run against t/servers/postgres/ctl's server (127.0.0.1:15432).
const testDSN = "postgres://rffi:rffi_pw@127.0.0.1:15432/rffi?sslmode=disable"

func projectRoot() string {
	dir, _ := os.Getwd()
	return filepath.Join(dir, "..", "..")
}

func needServer(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:15432", time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL on 127.0.0.1:15432 is not reachable (start it with t/servers/postgres/ctl start): %v", err)
		}
		t.Skip("SKIPPING: PostgreSQL on 127.0.0.1:15432 is not running; start it with t/servers/postgres/ctl start")
	}
	c.Close()
}

func open(t *testing.T, opts core.Options) *Runtime {
	t.Helper()
	needServer(t)
	if opts == nil {
		opts = core.Options{}
	}
	if _, ok := opts["dsn"]; !ok {
		opts["dsn"] = testDSN
	}
	o, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := o.(*Runtime)
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

// result is a decoded query reply.
type result struct {
	names, types []any
	rows         []any
	tag          string
	affected     int64
}

// replyBytes returns the bytes of a reply (and the reply's buffer to the
// pool, as the core does).
func replyBytes(t *testing.T, v any) []byte {
	t.Helper()
	r, ok := v.(*core.Reply)
	if !ok {
		t.Fatalf("reply is %T", v)
	}
	b := append([]byte(nil), r.Buf...)
	r.Release()
	return b
}

func decodeResult(t *testing.T, v any) result {
	t.Helper()
	d, err := core.Decode(replyBytes(t, v))
	if err != nil {
		t.Fatal(err)
	}
	a := normalize(d).([]any)
	return result{names: a[0].([]any), types: a[1].([]any), rows: a[2].([]any), tag: a[3].(string), affected: a[4].(int64)}
}

// normalize turns msgpack bin ([]byte) into strings, as Lua sees them.
func normalize(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = normalize(x[k])
		}
	}
	return v
}

func call(t *testing.T, o core.Object, op string, args ...any) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := o.Call(ctx, op, args)
	if err != nil {
		t.Fatalf("%s %v: %v", op, args, err)
	}
	return v
}

func query(t *testing.T, o core.Object, sql string, args ...any) result {
	t.Helper()
	return decodeResult(t, call(t, o, "query_array", append([]any{sql}, args...)...))
}

func value(t *testing.T, o core.Object, sql string, args ...any) any {
	t.Helper()
	res := query(t, o, sql, args...)
	if len(res.rows) != 1 {
		t.Fatalf("%s: %d rows", sql, len(res.rows))
	}
	return res.rows[0].([]any)[0]
}

func TestTypesOut(t *testing.T) {
	r := open(t, nil)
	call(t, r, "simple", "DROP TYPE IF EXISTS mood CASCADE; CREATE TYPE mood AS ENUM ('sad', 'happy')")
	cases := []struct {
		sql  string
		want any
		typ  string
	}{
		{"SELECT NULL::int", core.Null{}, "int4"},
		{"SELECT true", true, "bool"},
		{"SELECT 32767::int2", int64(32767), "int2"},
		{"SELECT (-2147483648)::int4", int64(-2147483648), "int4"},
		{"SELECT 9223372036854775807::int8", int64(9223372036854775807), "int8"},
		{"SELECT 1.5::float4", 1.5, "float4"},
		{"SELECT 0.1::float8", 0.1, "float8"},
		{"SELECT 12345678901234567890.123450::numeric", "12345678901234567890.123450", "numeric"},
		{"SELECT 'héllo'::text", "héllo", "text"},
		{"SELECT 'ab'::varchar(5)", "ab", "varchar"},
		{`SELECT '\x00ff41'::bytea`, "\x00\xffA", "bytea"},
		{`SELECT '{"a": [1, 2]}'::jsonb`, `{"a": [1, 2]}`, "jsonb"},
		{`SELECT '{"a":1}'::json`, `{"a":1}`, "json"},
		{"SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid"},
		{"SELECT '2024-02-29'::date", "2024-02-29", "date"},
		{"SELECT '2024-02-29 13:14:15.123456'::timestamp", "2024-02-29T13:14:15.123456", "timestamp"},
		{"SELECT '2024-02-29 13:14:15+00'::timestamptz AT TIME ZONE 'UTC'", "2024-02-29T13:14:15", "timestamp"},
		{"SELECT '1 day 02:03:04'::interval", "1 day 02:03:04", "interval"},
		{"SELECT ARRAY[1, NULL, 3]::int[]", []any{int64(1), core.Null{}, int64(3)}, "_int4"},
		{"SELECT ARRAY[[1,2],[3,4]]", []any{[]any{int64(1), int64(2)}, []any{int64(3), int64(4)}}, "_int4"},
		{`SELECT ARRAY['a"b', 'c,d', NULL, 'NULL', '']::text[]`, []any{`a"b`, "c,d", core.Null{}, "NULL", ""}, "_text"},
		{"SELECT ARRAY[1.10, 2]::numeric[]", []any{"1.10", "2"}, "_numeric"},
		{`SELECT ARRAY['\x01'::bytea]`, []any{"\x01"}, "_bytea"},
		{"SELECT 'happy'::mood", "happy", "mood"},
		{"SELECT ARRAY['sad','happy']::mood[]", []any{"sad", "happy"}, "_mood"},
		{"SELECT '192.168.0.1'::inet", "192.168.0.1", "inet"},
		{"SELECT '10.0.0.0/8'::cidr", "10.0.0.0/8", "cidr"},
		{"SELECT point(1, 2)", "(1,2)", "point"},
		{"SELECT 'infinity'::timestamptz", "infinity", "timestamptz"},
	}
	for _, c := range cases {
		res := query(t, r, c.sql)
		got := res.rows[0].([]any)[0]
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.sql, got, c.want)
		}
		if res.types[0] != c.typ {
			t.Errorf("%s: type %v, want %s", c.sql, res.types[0], c.typ)
		}
	}
	tz := value(t, r, "SELECT '2024-02-29 13:14:15.5+02'::timestamptz").(string)
	if !strings.HasPrefix(tz, "2024-02-29T") {
		t.Errorf("timestamptz %q is not ISO 8601", tz)
	}
}

func TestTypesIn(t *testing.T) {
	r := open(t, nil)
	cases := []struct {
		sql  string
		arg  any
		want any
	}{
		{"SELECT $1::int8", int64(9007199254740993), int64(9007199254740993)},
		{"SELECT $1::int8", "9223372036854775807", int64(9223372036854775807)},
		{"SELECT $1::int4", int64(-7), int64(-7)},
		{"SELECT $1::float8", 2.5, 2.5},
		{"SELECT $1::float8", int64(3), 3.0},
		{"SELECT $1::numeric", "3.14159265358979323846264338327950288", "3.14159265358979323846264338327950288"},
		{"SELECT $1::numeric", 0.1, "0.1"},
		{"SELECT $1::bool", true, true},
		{"SELECT $1::text", "it's \"quoted\" ünïcødé ✓", "it's \"quoted\" ünïcødé ✓"},
		{"SELECT $1::text", int64(42), "42"},
		{"SELECT $1::bytea", "a\x00b\\x'", "a\x00b\\x'"},
		{"SELECT $1::uuid::text", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"SELECT $1::date", "2024-01-02", "2024-01-02"},
		{"SELECT $1::timestamptz AT TIME ZONE 'UTC'", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05"},
		{"SELECT $1::jsonb->>'a'", map[string]any{"a": "x"}, "x"},
		{"SELECT $1::json::text", []any{int64(1), core.Null{}}, "[1,null]"},
		{"SELECT $1::int[]", []any{int64(1), core.Null{}, int64(3)}, []any{int64(1), core.Null{}, int64(3)}},
		{"SELECT $1::int[]", map[string]any{}, []any{}},
		{"SELECT $1::text[]", []any{`a"b\`, "{x}", ""}, []any{`a"b\`, "{x}", ""}},
		{"SELECT $1::int[][]", []any{[]any{int64(1), int64(2)}, []any{int64(3), int64(4)}}, []any{[]any{int64(1), int64(2)}, []any{int64(3), int64(4)}}},
		{"SELECT $1::inet", "::1", "::1"},
		{"SELECT $1::interval", "PT1H", "01:00:00"},
		{"SELECT $1::text IS NULL", core.Null{}, true},
	}
	for _, c := range cases {
		got := value(t, r, c.sql, c.arg)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s (%#v): got %#v, want %#v", c.sql, c.arg, got, c.want)
		}
	}
	// a non-integral number for an integer is the server's error, not a truncation
	_, err := r.Call(context.Background(), "query", []any{"SELECT $1::int4", 3.5})
	if err == nil || !strings.Contains(err.Error(), "22P02") {
		t.Errorf("3.5 as int4: %v", err)
	}
	// injection attempts stay data
	evil := "'; DROP TABLE x; --"
	if got := value(t, r, "SELECT $1::text", evil); got != evil {
		t.Errorf("injection: %#v", got)
	}
}

func TestErrors(t *testing.T) {
	r := open(t, nil)
	call(t, r, "simple", "DROP TABLE IF EXISTS errt; CREATE TABLE errt (id int PRIMARY KEY)")
	call(t, r, "query", "INSERT INTO errt VALUES (1)")
	_, err := r.Call(context.Background(), "query", []any{"INSERT INTO errt VALUES (1)"})
	var de core.DetailedError
	if !errors.As(err, &de) {
		t.Fatalf("not detailed: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "ERROR: duplicate key") || !strings.HasSuffix(err.Error(), "(SQLSTATE 23505)") {
		t.Errorf("message %q", err)
	}
	d := de.Detail().(map[string]any)
	if d["code"] != "23505" || d["constraint"] != "errt_pkey" || d["detail"] == nil {
		t.Errorf("detail %v", d)
	}
	// wrong password: clear and no password in the text
	bad := open(t, core.Options{"dsn": "postgres://rffi:s3cr3t-wrong@127.0.0.1:15432/rffi?sslmode=disable"})
	_, err = bad.Call(context.Background(), "query", []any{"SELECT 1"})
	if err == nil || !strings.Contains(err.Error(), "28P01") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("wrong password: %v", err)
	}
	// TLS-only role without TLS
	tlsOnly := open(t, core.Options{"dsn": "postgres://rffi_tls:rffi_pw@127.0.0.1:15432/rffi?sslmode=disable"})
	_, err = tlsOnly.Call(context.Background(), "query", []any{"SELECT 1"})
	if err == nil || !strings.Contains(err.Error(), "no encryption") {
		t.Errorf("tls-only without tls: %v", err)
	}
	// ... and with TLS, verified against the test CA
	ca := filepath.Join(projectRoot(), ".run", "postgres", "server.crt")
	withTLS := open(t, core.Options{"host": "127.0.0.1", "port": int64(15432), "user": "rffi_tls", "password": "rffi_pw",
		"database": "rffi", "sslmode": "verify-full", "sslrootcert": ca})
	if v := value(t, withTLS, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); v != true {
		t.Errorf("ssl: %v", v)
	}
	// TLS required but the server does not offer it
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 8)
			c.Read(buf)
			c.Write([]byte("N"))
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	noTLS := open(t, core.Options{"dsn": fmt.Sprintf("postgres://rffi:rffi_pw@127.0.0.1:%d/rffi?sslmode=require", port)})
	_, err = noTLS.Call(context.Background(), "query", []any{"SELECT 1"})
	if err == nil || !strings.Contains(err.Error(), "server refused TLS connection") {
		t.Errorf("tls not offered: %v", err)
	}
}

func TestPreparedBatchCopy(t *testing.T) {
	r := open(t, nil)
	call(t, r, "prepare", "add", "SELECT $1::int + $2::int AS sum")
	call(t, r, "prepare", "add", "SELECT $1::int + $2::int AS sum") // idempotent
	if _, err := r.Call(context.Background(), "prepare", []any{"add", "SELECT 1"}); err == nil {
		t.Error("re-preparing with other SQL must fail")
	}
	res := decodeResult(t, call(t, r, "execute", "add", int64(2), int64(3)))
	if res.rows[0].(map[string]any)["sum"] != int64(5) || res.names[0] != "sum" {
		t.Errorf("execute: %#v", res)
	}
	call(t, r, "simple", "DROP TABLE IF EXISTS ct; CREATE TABLE ct (id int, name text, data bytea, tags text[], doc jsonb, n numeric)")
	rows := make([]any, 0, 1000)
	for i := range 1000 {
		rows = append(rows, []any{int64(i), fmt.Sprintf("n\"a,m\ne %d", i), "\x00\x01", []any{"x", "y,z"}, map[string]any{"i": int64(i)}, core.Null{}})
	}
	n := call(t, r, "copy_from", "ct", []any{"id", "name", "data", "tags", "doc", "n"}, rows)
	if n != int64(1000) {
		t.Fatalf("copied %v", n)
	}
	res = query(t, r, "SELECT name, data, tags, doc->>'i', n FROM ct WHERE id = 7")
	want := []any{"n\"a,m\ne 7", "\x00\x01", []any{"x", "y,z"}, "7", core.Null{}}
	if !reflect.DeepEqual(res.rows[0], want) {
		t.Errorf("copied row %#v", res.rows[0])
	}
	b := call(t, r, "batch", []any{
		[]any{"SELECT $1::int AS a", int64(1)},
		[]any{"INSERT INTO ct (id) VALUES ($1), ($2)", int64(5000), int64(5001)},
		[]any{"SELECT count(*) FROM ct"},
	})
	d, _ := core.Decode(replyBytes(t, b))
	results := normalize(d).([]any)
	if len(results) != 3 || results[1].([]any)[4] != int64(2) || results[2].([]any)[2].([]any)[0].(map[string]any)["count"] != int64(1002) {
		t.Errorf("batch: %#v", results)
	}
	// simple protocol: several statements
	s := call(t, r, "simple", "SELECT 1 AS a; SELECT 'x' AS b, NULL AS c")
	d, _ = core.Decode(replyBytes(t, s))
	if len(d.([]any)) != 2 {
		t.Errorf("simple: %#v", d)
	}
}

func TestTransactions(t *testing.T) {
	r := open(t, core.Options{"tx_idle_timeout": int64(300)})
	call(t, r, "simple", "DROP TABLE IF EXISTS txt; CREATE TABLE txt (v int)")
	tx := call(t, r, "begin", nil).(*Tx)
	call(t, tx, "query", "INSERT INTO txt VALUES (1)")
	call(t, tx, "commit")
	if _, err := tx.Call(context.Background(), "query", []any{"SELECT 1"}); err == nil || !strings.Contains(err.Error(), "finished") {
		t.Errorf("call after commit: %v", err)
	}
	tx = call(t, r, "begin", map[string]any{"isolation": "serializable", "read_only": false}).(*Tx)
	call(t, tx, "query", "INSERT INTO txt VALUES (2)")
	call(t, tx, "rollback")
	// abandoned: closed by the core (GC / worker exit)
	tx = call(t, r, "begin", nil).(*Tx)
	call(t, tx, "query", "INSERT INTO txt VALUES (3)")
	tx.Close(context.Background())
	// idle: rolled back by the timer
	tx = call(t, r, "begin", nil).(*Tx)
	call(t, tx, "query", "INSERT INTO txt VALUES (4)")
	time.Sleep(600 * time.Millisecond)
	// timeout mid-call: rolled back
	tx2 := call(t, r, "begin", nil).(*Tx)
	call(t, tx2, "query", "INSERT INTO txt VALUES (5)")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := tx2.Call(ctx, "query", []any{"SELECT pg_sleep(2)"})
	cancel()
	if err == nil {
		t.Error("pg_sleep should time out")
	}
	if got := value(t, r, "SELECT array_agg(v ORDER BY v)::text FROM txt"); got != "{1}" {
		t.Errorf("rows %v", got)
	}
	// the canceled pg_sleep ends on the server a little later: poll
	var n any
	for range 50 {
		n = value(t, r, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'rffi' AND state LIKE 'idle in transaction%'")
		if n == int64(0) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != int64(0) {
		t.Errorf("%v idle-in-transaction connections: %v", n,
			query(t, r, "SELECT query, state FROM pg_stat_activity WHERE usename = 'rffi'").rows)
	}
}

func TestListen(t *testing.T) {
	r := open(t, nil)
	l := call(t, r, "listen", "chan_a").(*Listener)
	defer l.Close(context.Background())
	call(t, r, "notify", "chan_a", "hello")
	n := call(t, l, "recv").(map[string]any)
	if n["channel"] != "chan_a" || n["payload"] != "hello" {
		t.Errorf("got %v", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := l.Call(ctx, "recv", nil)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("recv timeout: %v", err)
	}
	call(t, l, "listen", "Chan B")
	call(t, r, "notify", "Chan B", "two")
	if n := call(t, l, "recv").(map[string]any); n["payload"] != "two" {
		t.Errorf("got %v", n)
	}
	// the session is killed (as by a server restart): one error, then recovery
	call(t, r, "query", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
	_, err = l.Call(context.Background(), "recv", nil)
	if err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("after kill: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			time.Sleep(100 * time.Millisecond)
			call(t, r, "notify", "chan_a", "again")
		}
	}()
	if n := call(t, l, "recv").(map[string]any); n["payload"] != "again" {
		t.Errorf("after reconnect: %v", n)
	}
	wg.Wait()
	// Close interrupts a waiting recv at once
	quiet := call(t, r, "listen", "quiet_chan").(*Listener)
	done := make(chan error, 1)
	go func() {
		_, err := quiet.Call(context.Background(), "recv", nil)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	quiet.Close(context.Background())
	if err := <-done; err == nil || time.Since(start) > time.Second {
		t.Errorf("recv after close: %v after %v", err, time.Since(start))
	}
}

func TestPoolExhaustion(t *testing.T) {
	r := open(t, core.Options{"max_conns": int64(2)})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := r.Call(ctx, "query", []any{"SELECT pg_sleep(0.05)"})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// and a queue that cannot be served in time times out cleanly
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	for range 2 {
		go r.Call(context.Background(), "query", []any{"SELECT pg_sleep(1)"})
	}
	time.Sleep(50 * time.Millisecond)
	_, err := r.Call(ctx, "query", []any{"SELECT 1"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued call: %v", err)
	}
	if s := call(t, r, "stats").(map[string]any); s["max_conns"] != int32(2) {
		t.Errorf("stats %v", s)
	}
}

func TestServerRestart(t *testing.T) {
	if os.Getenv("RFFI_PG_RESTART") == "" && os.Getenv("CI") != "true" {
		t.Skip("set RFFI_PG_RESTART=1 to restart the test server")
	}
	r := open(t, nil)
	value(t, r, "SELECT 1")
	ctl := filepath.Join(projectRoot(), "t", "servers", "postgres", "ctl")
	if out, err := exec.Command(ctl, "restart").CombinedOutput(); err != nil {
		t.Fatalf("restart: %v %s", err, out)
	}
	var ok bool
	for range 20 {
		_, err := r.Call(context.Background(), "query", []any{"SELECT 1"})
		if err == nil {
			ok = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !ok {
		t.Error("no recovery after restart")
	}
}

func TestOptions(t *testing.T) {
	if _, err := New(core.Options{"nope": true}); err == nil {
		t.Error("unknown option accepted")
	}
	_, err := New(core.Options{"dsn": "postgres://u:topsecret@h:notaport/db"})
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("bad dsn: %v", err)
	}
	a := open(t, core.Options{"host": "127.0.0.1", "port": int64(15432), "user": "rffi", "password": "rffi_pw", "database": "rffi", "sslmode": "disable", "application_name": "rffi-test"})
	if v := value(t, a, "SELECT current_setting('application_name')"); v != "rffi-test" {
		t.Errorf("application_name %v", v)
	}
	b := open(t, core.Options{"host": "127.0.0.1", "port": int64(15432), "user": "rffi", "password": "rffi_pw", "database": "rffi", "sslmode": "disable", "application_name": "rffi-test"})
	if a.pool != b.pool {
		t.Error("same configuration, different pools")
	}
	j := open(t, core.Options{"decode_json": true, "statement_cache": "describe"})
	got := value(t, j, `SELECT '{"a":[1,2.5,null,"x"]}'::jsonb`)
	want := map[string]any{"a": []any{int64(1), 2.5, core.Null{}, "x"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded json %#v", got)
	}
	if v := value(t, j, "SELECT $1::int + 1", int64(1)); v != int64(2) {
		t.Errorf("describe mode: %v", v)
	}
}
