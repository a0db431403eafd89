package postgres

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// settings is the decoded options table of one runtime.
type settings struct {
	pool *pgxpool.Config
	// poolKey names the pool: runtimes whose connection and pool options
	// agree share one pool (one per distinct DSN/config per worker).
	poolKey string

	describeOnly bool          // statement_cache = "describe": unnamed statements (pgbouncer)
	cacheCap     int           // prepared statements kept per connection
	decodeJSON   bool          // json/jsonb columns decoded into tables
	txIdle       time.Duration // an unused transaction is rolled back after this
}

// connection fields that go into the libpq-style connection string.
var connFields = []struct{ opt, key string }{
	{"host", "host"}, {"port", "port"}, {"user", "user"}, {"password", "password"},
	{"database", "dbname"}, {"sslmode", "sslmode"}, {"sslrootcert", "sslrootcert"},
	{"sslcert", "sslcert"}, {"sslkey", "sslkey"}, {"application_name", "application_name"},
}

var knownOptions = map[string]bool{
	"dsn": true, "min_conns": true, "max_conns": true, "max_conn_lifetime": true,
	"max_conn_idle_time": true, "statement_cache": true, "statement_cache_capacity": true,
	"decode_json": true, "connect_timeout": true, "params": true, "tx_idle_timeout": true,
	"health_check_period": true, "ssl_verify": true,
}

func init() {
	for _, f := range connFields {
		knownOptions[f.opt] = true
	}
}

// quoteConnValue quotes a value for a keyword/value connection string.
func quoteConnValue(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `'`, `\'`)
	return "'" + s + "'"
}

func optString(opts core.Options, k string) (string, bool, error) {
	v, ok := opts[k]
	if !ok || v == nil {
		return "", false, nil
	}
	switch x := v.(type) {
	case string:
		return x, true, nil
	case int64:
		return strconv.FormatInt(x, 10), true, nil
	}
	return "", false, fmt.Errorf("postgres: option %s must be a string, got %T", k, v)
}

// Bounds of the numeric options: a pool size that fits pgx's int32, and
// milliseconds that cannot overflow once in nanoseconds (~35 years).
const (
	maxCount = 1 << 20
	maxMs    = 1 << 40
)

// optInt reads a whole number in [0, hi]. An integral Lua number arrives as
// an int64; a float64 is accepted only when it is one too.
func optInt(opts core.Options, k string, def, hi int64) (int64, error) {
	v, ok := opts[k]
	if !ok || v == nil {
		return def, nil
	}
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case float64:
		if x != math.Trunc(x) || x < 0 || x > float64(hi) {
			return 0, fmt.Errorf("postgres: option %s must be an integer between 0 and %d, got %v", k, hi, x)
		}
		n = int64(x)
	default:
		return 0, fmt.Errorf("postgres: option %s must be a number, got %T", k, v)
	}
	if n < 0 || n > hi {
		return 0, fmt.Errorf("postgres: option %s must be an integer between 0 and %d, got %d", k, hi, n)
	}
	return n, nil
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// parseSettings builds the pool configuration. It never performs I/O and
// never puts the password into an error message.
func parseSettings(opts core.Options) (*settings, error) {
	// sorted: the same table gives the same error every time
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		if !knownOptions[k] {
			return nil, fmt.Errorf("postgres: unknown option %q", k)
		}
	}
	var parts []string
	dsn, hasDSN, err := optString(opts, "dsn")
	if err != nil {
		return nil, err
	}
	for _, f := range connFields {
		v, ok, err := optString(opts, f.opt)
		if err != nil {
			return nil, err
		}
		if ok {
			parts = append(parts, f.key+"="+quoteConnValue(v))
		}
	}
	if ct, err := optInt(opts, "connect_timeout", 10000, maxMs); err != nil {
		return nil, err
	} else if ct > 0 {
		// libpq's connect_timeout is in whole seconds; round up
		parts = append(parts, "connect_timeout="+strconv.FormatInt((ct+999)/1000, 10))
	}
	if hasDSN && len(parts) > 0 && strings.Contains(dsn, "://") {
		// fields override a URL: turn them into query parameters
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		q := make([]string, 0, len(parts))
		for _, f := range connFields {
			if v, ok, _ := optString(opts, f.opt); ok {
				q = append(q, f.key+"="+urlQueryEscape(v))
			}
		}
		if len(q) > 0 {
			dsn += sep + strings.Join(q, "&")
		}
	} else if len(parts) > 0 {
		dsn = strings.TrimSpace(dsn + " " + strings.Join(parts, " "))
	}
	if dsn == "" {
		return nil, fmt.Errorf("postgres: give a dsn or at least host/user/database options")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: bad connection options: %w", withoutConnString(err))
	}
	verify := true
	if v, ok := opts["ssl_verify"]; ok && v != nil {
		b, isBool := v.(bool)
		if !isBool {
			return nil, fmt.Errorf("postgres: option ssl_verify must be a boolean, got %T", v)
		}
		verify = b
	}
	if verify {
		verifyTLS(&cfg.ConnConfig.Config)
	}
	rawIODial(&cfg.ConnConfig.Config)
	s := &settings{pool: cfg}
	if n, err := optInt(opts, "max_conns", 10, maxCount); err != nil {
		return nil, err
	} else if n > 0 {
		cfg.MaxConns = int32(n)
	}
	if n, err := optInt(opts, "min_conns", 0, maxCount); err != nil {
		return nil, err
	} else {
		cfg.MinConns = int32(n)
	}
	if cfg.MinConns > cfg.MaxConns {
		return nil, fmt.Errorf("postgres: option min_conns (%d) exceeds max_conns (%d)", cfg.MinConns, cfg.MaxConns)
	}
	if n, err := optInt(opts, "max_conn_lifetime", 3600000, maxMs); err != nil {
		return nil, err
	} else if n > 0 {
		cfg.MaxConnLifetime = ms(n)
	}
	if n, err := optInt(opts, "max_conn_idle_time", 1800000, maxMs); err != nil {
		return nil, err
	} else if n > 0 {
		cfg.MaxConnIdleTime = ms(n)
	}
	if n, err := optInt(opts, "health_check_period", 60000, maxMs); err != nil {
		return nil, err
	} else if n > 0 {
		cfg.HealthCheckPeriod = ms(n)
	}
	if n, err := optInt(opts, "statement_cache_capacity", 512, maxCount); err != nil {
		return nil, err
	} else {
		s.cacheCap = int(n)
	}
	if n, err := optInt(opts, "tx_idle_timeout", 60000, maxMs); err != nil {
		return nil, err
	} else {
		s.txIdle = ms(n)
	}
	mode, _, err := optString(opts, "statement_cache")
	if err != nil {
		return nil, err
	}
	switch mode {
	case "", "prepare":
	case "describe":
		s.describeOnly = true
	default:
		return nil, fmt.Errorf(`postgres: option statement_cache must be "prepare" or "describe", got %q`, mode)
	}
	if v, ok := opts["decode_json"]; ok && v != nil {
		b, isBool := v.(bool)
		if !isBool {
			return nil, fmt.Errorf("postgres: option decode_json must be a boolean, got %T", v)
		}
		s.decodeJSON = b
	}
	if p, ok := opts["params"]; ok && p != nil {
		m, isMap := p.(map[string]any)
		if !isMap {
			return nil, fmt.Errorf("postgres: option params must be a table of strings, got %T", p)
		}
		for k, v := range m {
			sv, ok := core.ToString(v)
			if !ok {
				return nil, fmt.Errorf("postgres: option params.%s must be a string", k)
			}
			cfg.ConnConfig.RuntimeParams[k] = sv
		}
	}
	// Dates and timestamps come back as text: pin the style so they are ISO 8601.
	cfg.ConnConfig.RuntimeParams["datestyle"] = "ISO, YMD"
	s.poolKey = poolKey(dsn, cfg) + fmt.Sprintf("\x00verify=%v", verify)
	return s, nil
}

// withoutConnString drops the connection string from pgx's parse errors.
// pgx masks the password in it only as well as it can guess where the
// password is in a string that did not parse: a URL whose password holds
// an unescaped "@" came out with the rest of the password in clear. What
// is left (pgx's message and the cause) names the problem without quoting
// the string.
func withoutConnString(err error) error {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return err
	}
	bare := *pe
	bare.ConnString = ""
	return parseError{strings.TrimPrefix(bare.Error(), "cannot parse ``: "), pe.Unwrap()}
}

// parseError keeps the cause for errors.Is / errors.As.
type parseError struct {
	msg   string
	cause error
}

func (e parseError) Error() string { return e.msg }
func (e parseError) Unwrap() error { return e.cause }

// verifyTLS makes every TLS attempt of the connection verify the server:
// libpq's (and pgx's) sslmode=require, prefer and allow encrypt without
// checking the certificate, which a man in the middle defeats. Such an
// attempt becomes verify-full (the chain against sslrootcert or the system
// roots, and the host name); verify-ca (also require with an sslrootcert,
// as in libpq) keeps its own chain check. With prefer and allow a failed
// verification still falls back to a plain connection, never to an
// unverified TLS one.
func verifyTLS(cc *pgconn.Config) {
	fix := func(host string, t *tls.Config) {
		if t == nil || !t.InsecureSkipVerify || t.VerifyPeerCertificate != nil {
			return
		}
		t.InsecureSkipVerify = false
		if t.ServerName == "" {
			// pgx leaves it empty for IP addresses (no SNI); Go's TLS
			// then checks the certificate's IP SANs against it
			t.ServerName = host
		}
	}
	fix(cc.Host, cc.TLSConfig)
	for _, fb := range cc.Fallbacks {
		fix(fb.Host, fb.TLSConfig)
	}
}

func urlQueryEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// poolKey identifies a pool configuration: the final connection string
// (password included, so the key is never shown) plus the pool settings.
func poolKey(dsn string, cfg *pgxpool.Config) string {
	cc := cfg.ConnConfig
	params := make([]string, 0, len(cc.RuntimeParams))
	for k, v := range cc.RuntimeParams {
		params = append(params, k+"="+v)
	}
	sort.Strings(params)
	return fmt.Sprintf("%s\x00%s\x00%d/%d/%v/%v/%v", dsn, strings.Join(params, ","),
		cfg.MinConns, cfg.MaxConns, cfg.MaxConnLifetime, cfg.MaxConnIdleTime, cfg.HealthCheckPeriod)
}
