package redis

import (
	"context"
	"fmt"
	"testing"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// Benchmarks against the test server (t/servers/redis/ctl start):
//
//	go test -run XXX -bench . ./modules/redis
func BenchmarkGet(b *testing.B) {
	r := benchRuntime(b)
	ctx := context.Background()
	args := []any{"bench:k100"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Call(ctx, "get", args); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPipeline100(b *testing.B) {
	r := benchRuntime(b)
	ctx := context.Background()
	var cmds []any
	for i := 1; i <= 100; i++ {
		cmds = append(cmds, int64(2), "get", fmt.Sprintf("bench:p%d", i))
	}
	args := []any{cmds}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Call(ctx, ".pipe", args); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRuntime(b *testing.B) *Runtime {
	o, err := New(core.Options{"addr": singleAddr})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { o.Close(context.Background()) })
	r := o.(*Runtime)
	if _, err := r.Call(context.Background(), "ping", nil); err != nil {
		b.Skip("no redis at " + singleAddr)
	}
	return r
}

// BenchmarkGetParallel50 is the shape of the wrk benchmark: 50 concurrent
// callers of single GETs, one round trip each, coalesced, or through
// go-redis's autopipeliner.
func BenchmarkGetParallel50(b *testing.B) {
	for _, mode := range []core.Options{
		{"coalesce": false}, {"coalesce": true}, {"coalesce": false, "auto_pipeline": true},
	} {
		b.Run(fmt.Sprintf("coalesce=%v,auto_pipeline=%v", mode["coalesce"], mode["auto_pipeline"] == true), func(b *testing.B) {
			mode["addr"] = singleAddr
			o, err := New(mode)
			if err != nil {
				b.Fatal(err)
			}
			defer o.Close(context.Background())
			args := []any{"bench:k100"}
			b.SetParallelism(25) // 25 x GOMAXPROCS(2) = 50 callers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := o.Call(context.Background(), "get", args); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
