package postgres

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// BenchmarkQueryInt: the runtime's own cost for `SELECT $1::int`, to set
// against BenchmarkPgxInt (plain pgxpool QueryRow).
func BenchmarkQueryInt(b *testing.B) {
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
	defer r.Close(context.Background())
	ctx := context.Background()
	args := []any{"SELECT $1::int", int64(0)}
	for i := 0; b.Loop(); i++ {
		args[1] = int64(i)
		if _, err := r.Call(ctx, "query", args); err != nil {
			b.Fatal(err)
		}
	}
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
