// Command native is the baseline of bench/redis/run.sh: N sequential GETs
// with go-redis/v9 from a plain Go program, to compare with the same GETs
// made from one nginx request through resty.ffi.redis.
//
//	native -addr 127.0.0.1:16379 -key bench:k100 -n 100000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:16379", "redis address")
	key := flag.String("key", "bench:k100", "key to GET")
	n := flag.Int("n", 100000, "number of sequential GETs")
	flag.Parse()
	ctx := context.Background()
	c := goredis.NewClient(&goredis.Options{Addr: *addr, Protocol: 2, DisableIdentity: true})
	defer c.Close()
	for i := 0; i < 1000; i++ { // warm up
		if err := c.Get(ctx, *key).Err(); err != nil {
			fmt.Fprintln(os.Stderr, "native: GET:", err)
			os.Exit(1)
		}
	}
	start := time.Now()
	for i := 0; i < *n; i++ {
		if err := c.Get(ctx, *key).Err(); err != nil {
			fmt.Fprintln(os.Stderr, "native: GET:", err)
			os.Exit(1)
		}
	}
	el := time.Since(start)
	fmt.Printf("%.0f\n", float64(*n)/el.Seconds())
}
