package redis

import (
	"testing"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/internal/optfuzz"
)

// FuzzRedisOptions feeds options tables to parseOptions (New only adds
// go-redis's client, which connects lazily). An accepted table must give a
// configuration go-redis can build a client from (NewClient panics on a
// negative pool size) with no duration wrapped around, and TLS verification
// must stay on unless the table turned it off.
func FuzzRedisOptions(f *testing.F) {
	optfuzz.Fuzz(f, []core.Options{
		{"host": "127.0.0.1", "port": int64(16379), "password": "secret", "db": int64(2), "pool_size": int64(20)},
		{"addr": "unix:/tmp/redis.sock", "read_timeout": int64(-1), "write_timeout": int64(-2), "max_retries": int64(0)},
		{"addrs": []any{"127.0.0.1:17001", "127.0.0.1:17002"}, "read_from_replicas": true, "max_redirects": int64(-1)},
		{"master_name": "mymaster", "sentinel_addrs": []any{"127.0.0.1:26379"}, "sentinel_password": "s3cret!"},
		{"mode": "cluster", "addrs": map[string]any{}, "protocol": int64(3)},
		{"ssl": true, "ssl_verify": false, "connect_timeout": int64(500), "pool_timeout": 1.5},
		{"tls": map[string]any{"verify": true, "server_name": "redis.test"}, "conn_max_idle_time": int64(-1)},
		{"pool_size": int64(-1), "connect_timeout": int64(1) << 62},
		{"mode": "failover", "auto_pipeline": true, "min_idle": int64(2), "dial_retries": int64(3)},
	}, "redis: ", parseOptions, checkConfig)
}

func checkConfig(t *testing.T, opts core.Options, c *config) {
	uo := &c.uo
	switch c.mode {
	case modeSingle:
		if len(uo.Addrs) != 1 {
			t.Fatalf("single mode with addresses %q", uo.Addrs)
		}
	case modeCluster:
		if len(uo.Addrs) == 0 {
			t.Fatal("cluster mode without seed addresses")
		}
	case modeSentinel:
		if len(uo.Addrs) == 0 || uo.MasterName == "" {
			t.Fatalf("sentinel mode with sentinels %q, master %q", uo.Addrs, uo.MasterName)
		}
	default:
		t.Fatalf("mode %q", c.mode)
	}
	if c.network != "tcp" && c.network != "unix" {
		t.Fatalf("network %q", c.network)
	}
	if uo.Protocol != 2 && uo.Protocol != 3 {
		t.Fatalf("protocol %d", uo.Protocol)
	}
	if uo.PoolSize < 0 || uo.MinIdleConns < 0 || uo.MaxIdleConns < 0 || uo.DB < 0 {
		t.Fatalf("pool %d, min idle %d, max idle %d, db %d", uo.PoolSize, uo.MinIdleConns, uo.MaxIdleConns, uo.DB)
	}
	if uo.MaxRetries < -1 || uo.MaxRedirects < -1 || uo.DialerRetries < 1 {
		t.Fatalf("retries %d, redirects %d, dial retries %d", uo.MaxRetries, uo.MaxRedirects, uo.DialerRetries)
	}
	// a duration is a go-redis sentinel (-1, -2) where one is allowed, or
	// exactly the milliseconds given
	for _, d := range []struct {
		key    string
		d      time.Duration
		lowest time.Duration
	}{
		{"dial_timeout", uo.DialTimeout, 0}, {"pool_timeout", uo.PoolTimeout, 0},
		{"conn_max_idle_time", uo.ConnMaxIdleTime, -1},
		{"read_timeout", uo.ReadTimeout, -2}, {"write_timeout", uo.WriteTimeout, -2},
	} {
		if d.d < d.lowest || (d.d > 0 && d.d%time.Millisecond != 0) || !optfuzz.Exact(opts, d.key, d.d) {
			t.Fatalf("%s = %v from %#v", d.key, d.d, opts[d.key])
		}
	}
	if uo.TLSConfig != nil && uo.TLSConfig.InsecureSkipVerify {
		sub, _ := opts["tls"].(map[string]any)
		if opts["ssl_verify"] != false && (sub == nil || sub["verify"] != false) {
			t.Fatalf("verification off though the options did not turn it off: %#v", opts)
		}
	}
	// the go-redis option sets are derived without I/O
	switch c.mode {
	case modeCluster:
		_ = uo.Cluster()
	case modeSentinel:
		_ = uo.Failover()
	default:
		_ = uo.Simple()
	}
}
