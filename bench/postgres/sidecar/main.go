// Command sidecar is the baseline for bench/postgres: a small Go HTTP
// service on a Unix socket (pgx/v5 + pgxpool, the same pool size as the
// nginx side) that nginx reaches with proxy_pass. It answers with exactly
// the bytes the resty.ffi.postgres handlers print.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
)

// RowsSQL is the 100-row x 5-column query of the benchmark.
const RowsSQL = "SELECT i AS id, 'name-' || i AS name, i * 1000 AS n, i % 2 = 0 AS flag, " +
	"(date '2024-01-01' + i)::text AS d FROM generate_series(1, 100) AS i"

func main() {
	sock := flag.String("socket", "/tmp/resty-ffi-pg-bench.sock", "unix socket to listen on")
	dsn := flag.String("dsn", "postgres://rffi:rffi_pw@127.0.0.1:15432/rffi?sslmode=disable", "database")
	conns := flag.Int("conns", 8, "pool size")
	flag.Parse()
	cfg, err := pgxpool.ParseConfig(*dsn)
	if err != nil {
		log.Fatal(err)
	}
	cfg.MaxConns = int32(*conns)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	os.Remove(*sock)
	ln, err := net.Listen("unix", *sock)
	if err != nil {
		log.Fatal(err)
	}
	os.Chmod(*sock, 0o666)
	http.HandleFunc("/int", func(w http.ResponseWriter, r *http.Request) {
		v, _ := strconv.Atoi(r.URL.Query().Get("v"))
		var n int32
		if err := pool.QueryRow(r.Context(), "SELECT $1::int", v).Scan(&n); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write(strconv.AppendInt(nil, int64(n), 10))
	})
	http.HandleFunc("/rows", func(w http.ResponseWriter, r *http.Request) {
		rows, err := pool.Query(r.Context(), RowsSQL)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer rows.Close()
		buf := make([]byte, 0, 4096)
		for rows.Next() {
			var id int32
			var n int32
			var name, d string
			var flag bool
			if err := rows.Scan(&id, &name, &n, &flag, &d); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			buf = strconv.AppendInt(buf, int64(id), 10)
			buf = append(buf, '\t')
			buf = append(buf, name...)
			buf = append(buf, '\t')
			buf = strconv.AppendInt(buf, int64(n), 10)
			buf = append(buf, '\t')
			buf = strconv.AppendBool(buf, flag)
			buf = append(buf, '\t')
			buf = append(buf, d...)
			buf = append(buf, '\n')
		}
		if rows.Err() != nil {
			http.Error(w, rows.Err().Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
		w.Write(buf)
	})
	log.Fatal(http.Serve(ln, nil))
}
