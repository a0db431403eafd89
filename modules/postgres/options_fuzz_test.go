package postgres

import (
	"testing"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/internal/optfuzz"
)

// FuzzPostgresOptions feeds options tables to parseSettings (New only adds
// the pool, which dials). An accepted table must give a pool configuration
// pgxpool takes (sizes within int32, min <= max, durations not wrapped),
// and connection fields given one by one must arrive as themselves: a quote
// or a backslash in a password cannot smuggle another keyword into the
// connection string.
func FuzzPostgresOptions(f *testing.F) {
	optfuzz.Fuzz(f, []core.Options{
		{"host": "127.0.0.1", "port": int64(15432), "user": "rffi", "password": "secret-pw", "database": "rffi"},
		{"dsn": "postgres://rffi:pw@127.0.0.1:15432/rffi?sslmode=disable", "max_conns": int64(4), "min_conns": int64(1)},
		{"dsn": "postgres://127.0.0.1/rffi", "user": "u", "password": "p w&x=y"},
		{"dsn": "host=127.0.0.1 dbname=rffi", "statement_cache": "describe", "decode_json": true},
		{"host": "h", "password": `a' host='evil \' x\`, "params": map[string]any{"search_path": "app", "work_mem": int64(64)}},
		{"host": "h", "connect_timeout": int64(1500), "tx_idle_timeout": int64(0), "health_check_period": 2.5},
		{"host": "h", "max_conns": int64(1) << 32, "max_conn_lifetime": int64(1) << 62, "min_conns": int64(20)},
		{"host": "/var/run/postgresql", "sslmode": "verify-full", "application_name": "app"},
	}, "postgres: ", parseSettings, checkSettings)
}

func checkSettings(t *testing.T, opts core.Options, s *settings) {
	cfg := s.pool
	if cfg.MaxConns < 1 || cfg.MinConns < 0 || cfg.MinConns > cfg.MaxConns {
		t.Fatalf("pool sizes min %d, max %d", cfg.MinConns, cfg.MaxConns)
	}
	for key, d := range map[string]time.Duration{
		"max_conn_lifetime": cfg.MaxConnLifetime, "max_conn_idle_time": cfg.MaxConnIdleTime,
		"health_check_period": cfg.HealthCheckPeriod, "tx_idle_timeout": s.txIdle,
	} {
		if d < 0 || !optfuzz.Exact(opts, key, d) {
			t.Fatalf("%s = %v from %#v", key, d, opts[key])
		}
	}
	if s.cacheCap < 0 || s.poolKey == "" || cfg.ConnConfig.RuntimeParams["datestyle"] != "ISO, YMD" {
		t.Fatalf("cache %d, pool key %q, runtime params %v", s.cacheCap, s.poolKey, cfg.ConnConfig.RuntimeParams)
	}
	if _, hasDSN := opts["dsn"]; hasDSN {
		return
	}
	cc := cfg.ConnConfig
	for key, got := range map[string]string{"user": cc.User, "password": cc.Password, "database": cc.Database} {
		if want, ok := opts[key].(string); ok && want != "" && got != want {
			t.Fatalf("option %s %q arrived as %q", key, want, got)
		}
	}
}
