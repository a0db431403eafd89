package postgres

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// benchRuntime opens a runtime on the test server for a benchmark.
func benchRuntime(b *testing.B) *Runtime {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:15432", time.Second); err != nil {
		b.Skip("PostgreSQL on 127.0.0.1:15432 is not running")
	} else {
		c.Close()
	}
	o, err := New(map[string]any{"dsn": testDSN})
	if err != nil {
		b.Fatal(err)
	}
	r := o.(*Runtime)
	b.Cleanup(func() { r.Close(context.Background()) })
	return r
}

// benchQuery runs one query per iteration and hands the reply back as the
// core would.
func benchQuery(b *testing.B, args []any, vary func(i int)) {
	r := benchRuntime(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		vary(i)
		res, err := r.Call(ctx, "query", args)
		if err != nil {
			b.Fatal(err)
		}
		res.(*core.Reply).Release()
	}
}

// BenchmarkQueryInt: the runtime's own cost for `SELECT $1::int`, to set
// against BenchmarkPgxInt (plain pgxpool QueryRow).
func BenchmarkQueryInt(b *testing.B) {
	args := []any{"SELECT $1::int", int64(0)}
	benchQuery(b, args, func(i int) { args[1] = int64(i) })
}

// BenchmarkQueryRows: the rows of `make bench` (100 x 5 columns).
func BenchmarkQueryRows(b *testing.B) {
	benchQuery(b, []any{"SELECT i AS id, 'name-' || i AS name, i * 1000 AS n, i % 2 = 0 AS flag, " +
		"(date '2024-01-01' + i)::text AS d FROM generate_series(1, 100) AS i"}, func(int) {})
}

func BenchmarkPgxInt(b *testing.B) {
	pool, err := pgxpool.New(context.Background(), testDSN)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	var v int32
	for i := 0; b.Loop(); i++ {
		if err := pool.QueryRow(ctx, "SELECT $1::int", i).Scan(&v); err != nil {
			b.Fatal(err)
		}
	}
}
