// Command native measures what the bridge is compared with: n sequential
// `SELECT $1::int` from plain Go with pgx/v5 (a pool, as resty.ffi.postgres
// uses, one query at a time). It prints the rate in queries per second.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

func main() {
	dsn := flag.String("dsn", "postgres://rffi:rffi_pw@127.0.0.1:15432/rffi?sslmode=disable", "database")
	n := flag.Int("n", 100000, "queries")
	flag.Parse()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	var v int32
	for i := range 1000 { // warm-up: connection, prepared statement
		if err := pool.QueryRow(ctx, "SELECT $1::int", i).Scan(&v); err != nil {
			log.Fatal(err)
		}
	}
	start := time.Now()
	for i := range *n {
		if err := pool.QueryRow(ctx, "SELECT $1::int", i).Scan(&v); err != nil {
			log.Fatal(err)
		}
		if int(v) != i {
			log.Fatalf("got %d, want %d", v, i)
		}
	}
	fmt.Printf("%.0f\n", float64(*n)/time.Since(start).Seconds())
}
