package redis

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// Modes of a runtime: which go-redis client it wraps.
const (
	modeSingle   = "single"
	modeCluster  = "cluster"
	modeSentinel = "sentinel"
)

// config is the parsed options table of rffi.open("redis", opts).
type config struct {
	mode    string
	network string // "tcp" or "unix" (single mode)
	uo      goredis.UniversalOptions
	// replicas routes read-only commands to replicas (cluster and sentinel).
	replicas bool
	// autoPipeline sends single commands through go-redis's autopipeliner,
	// which batches the commands of concurrent requests into pipelines. Off
	// by default: go-redis calls it experimental, and bench/redis/run.sh
	// measured no steady gain with the current core (within noise).
	autoPipeline bool
	// coalesce sends the single commands of concurrent calls as one
	// pipeline (coalesce.go). On by default.
	coalesce bool
}

// optionReader reads typed values out of the options map and remembers
// the first error, so parse stays a flat list of fields.
type optionReader struct {
	opts core.Options
	err  error
	seen map[string]bool
}

func (r *optionReader) fail(key, format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("redis: option %q: %s", key, fmt.Sprintf(format, args...))
	}
}

func (r *optionReader) get(key string) (any, bool) {
	r.seen[key] = true
	v, ok := r.opts[key]
	if ok && v == nil {
		return nil, false
	}
	if _, null := v.(core.Null); null {
		return nil, false
	}
	return v, ok
}

func (r *optionReader) str(key string) string {
	v, ok := r.get(key)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr {
		r.fail(key, "must be a string, got %T", v)
	}
	return s
}

// Bounds of the integer options: enough for any real pool, and small
// enough that go-redis never sees a size it cannot allocate.
const (
	maxCount = 1 << 20
	maxMs    = 1 << 40 // ~35 years: no overflow once in nanoseconds
)

// integer reads a whole number in [lo, hi]. An integral Lua number arrives
// as an int64; a float64 is accepted only when it is one too.
func (r *optionReader) integer(key string, lo, hi int64) int {
	v, ok := r.get(key)
	if !ok {
		return 0
	}
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case float64:
		if x != math.Trunc(x) || x < float64(lo) || x > float64(hi) {
			r.fail(key, "must be an integer between %d and %d, got %v", lo, hi, x)
			return 0
		}
		n = int64(x)
	default:
		r.fail(key, "must be a number, got %T", v)
		return 0
	}
	if n < lo || n > hi {
		r.fail(key, "must be an integer between %d and %d, got %d", lo, hi, n)
		return 0
	}
	return int(n)
}

// ms reads a duration in milliseconds, at least lo; negative values (lo < 0)
// pass through as go-redis's sentinels (-1: no timeout, -2: no deadline).
func (r *optionReader) ms(key string, lo int64) time.Duration {
	n := r.integer(key, lo, maxMs)
	if n < 0 {
		return time.Duration(n)
	}
	return time.Duration(n) * time.Millisecond
}

func (r *optionReader) boolean(key string, def bool) bool {
	v, ok := r.get(key)
	if !ok {
		return def
	}
	b, isBool := v.(bool)
	if !isBool {
		r.fail(key, "must be a boolean, got %T", v)
	}
	return b
}

// list reads an array of strings; an empty Lua table arrives as an empty
// map and is accepted as an empty list.
func (r *optionReader) list(key string) []string {
	v, ok := r.get(key)
	if !ok {
		return nil
	}
	switch l := v.(type) {
	case string:
		return []string{l}
	case map[string]any:
		if len(l) == 0 {
			return nil
		}
	case []any:
		out := make([]string, 0, len(l))
		for _, it := range l {
			s, isStr := it.(string)
			if !isStr {
				r.fail(key, "must be a list of \"host:port\" strings, got a %T in it", it)
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	r.fail(key, "must be a list of strings, got %T", v)
	return nil
}

var knownOptions = []string{
	"mode", "addr", "addrs", "host", "port", "path",
	"username", "password", "db", "client_name", "protocol",
	"pool_size", "min_idle", "min_idle_conns", "max_idle_conns", "pool_timeout",
	"conn_max_idle_time", "max_retries", "dial_retries",
	"connect_timeout", "dial_timeout", "read_timeout", "write_timeout",
	"ssl", "ssl_verify", "server_name", "tls",
	"master_name", "sentinel_addrs", "sentinel_username", "sentinel_password",
	"read_from_replicas", "max_redirects", "auto_pipeline", "coalesce",
	// lua-resty-redis connect options that mean nothing to a Go pool
	"pool", "backlog",
}

// parseOptions turns the Lua options table into a go-redis configuration.
// It does no I/O beyond reading TLS files.
func parseOptions(opts core.Options) (*config, error) {
	r := &optionReader{opts: opts, seen: map[string]bool{}}
	c := &config{network: "tcp"}
	uo := &c.uo

	addr := r.str("addr")
	if host := r.str("host"); host != "" {
		port := r.integer("port", 0, 65535)
		if port == 0 {
			port = 6379
		}
		addr = fmt.Sprintf("%s:%d", host, port)
	}
	if p := r.str("path"); p != "" {
		addr = "unix:" + p
	}
	if strings.HasPrefix(addr, "unix:") {
		c.network, addr = "unix", strings.TrimPrefix(addr, "unix:")
	} else if strings.HasPrefix(addr, "/") {
		c.network = "unix"
	}
	addrs := r.list("addrs")
	sentinels := r.list("sentinel_addrs")
	uo.MasterName = r.str("master_name")

	c.mode = r.str("mode")
	switch c.mode {
	case "":
		switch {
		case uo.MasterName != "":
			c.mode = modeSentinel
		case len(addrs) > 0:
			c.mode = modeCluster
		default:
			c.mode = modeSingle
		}
	case modeSingle, modeCluster, modeSentinel:
	case "failover":
		c.mode = modeSentinel
	default:
		r.fail("mode", "must be \"single\", \"cluster\" or \"sentinel\", got %q", c.mode)
	}
	switch c.mode {
	case modeSingle:
		if addr == "" && len(addrs) > 0 {
			addr = addrs[0]
		}
		if addr == "" {
			addr = "127.0.0.1:6379"
		}
		uo.Addrs = []string{addr}
	case modeCluster:
		if len(addrs) == 0 && addr != "" {
			addrs = []string{addr}
		}
		if len(addrs) == 0 {
			r.fail("addrs", "cluster mode needs at least one seed address")
		}
		uo.Addrs = addrs
	case modeSentinel:
		if uo.MasterName == "" {
			r.fail("master_name", "sentinel mode needs the master name")
		}
		if len(sentinels) == 0 {
			sentinels = addrs
		}
		if len(sentinels) == 0 {
			r.fail("sentinel_addrs", "sentinel mode needs at least one sentinel address")
		}
		uo.Addrs = sentinels
	}

	uo.Username = r.str("username")
	uo.Password = r.str("password")
	uo.SentinelUsername = r.str("sentinel_username")
	uo.SentinelPassword = r.str("sentinel_password")
	uo.DB = r.integer("db", 0, math.MaxInt32)
	uo.ClientName = r.str("client_name")
	uo.Protocol = r.integer("protocol", math.MinInt32, math.MaxInt32)
	switch uo.Protocol {
	case 0:
		// RESP2 keeps replies shaped as lua-resty-redis shapes them
		// (HGETALL as a flat array) and skips the HELLO round trip.
		uo.Protocol = 2
	case 2, 3:
	default:
		r.fail("protocol", "must be 2 or 3, got %d", uo.Protocol)
	}
	uo.PoolSize = r.integer("pool_size", 0, maxCount)
	uo.MinIdleConns = r.integer("min_idle", 0, maxCount)
	if n := r.integer("min_idle_conns", 0, maxCount); n > 0 {
		uo.MinIdleConns = n
	}
	uo.MaxIdleConns = r.integer("max_idle_conns", 0, maxCount)
	uo.PoolTimeout = r.ms("pool_timeout", 0)
	uo.ConnMaxIdleTime = r.ms("conn_max_idle_time", -1)
	if _, ok := r.get("max_retries"); ok {
		uo.MaxRetries = r.integer("max_retries", -1, maxCount)
		if uo.MaxRetries == 0 {
			uo.MaxRetries = -1 // go-redis: -1 disables retries, 0 is the default
		}
	}
	// One dial attempt per try: a refused connection is reported at once,
	// as a cosocket does, instead of after go-redis's 5 dials per try.
	uo.DialerRetries = 1
	if n := r.integer("dial_retries", 0, maxCount); n > 0 {
		uo.DialerRetries = n
	}
	uo.DialTimeout = r.ms("connect_timeout", 0)
	if d := r.ms("dial_timeout", 0); d != 0 {
		uo.DialTimeout = d
	}
	// Every call carries a deadline from Lua (its timeout); the socket
	// deadlines follow it. Explicit read/write timeouts cap it further.
	uo.ContextTimeoutEnabled = true
	uo.ReadTimeout = r.ms("read_timeout", -2)
	if uo.ReadTimeout == 0 {
		uo.ReadTimeout = -1
	}
	uo.WriteTimeout = r.ms("write_timeout", -2)
	if uo.WriteTimeout == 0 {
		uo.WriteTimeout = -1
	}
	uo.MaxRedirects = r.integer("max_redirects", -1, maxCount)
	c.replicas = r.boolean("read_from_replicas", false)
	c.autoPipeline = r.boolean("auto_pipeline", false)
	c.coalesce = r.boolean("coalesce", true)
	uo.DisableIdentity = true // no CLIENT SETINFO round trip on each new connection

	tlsConf, err := r.tlsConfig(addr, uo.Addrs)
	if err != nil && r.err == nil {
		r.err = err
	}
	uo.TLSConfig = tlsConf
	uo.Dialer = dialer(uo.DialTimeout, tlsConf)
	// sorted: the same table gives the same error every time
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		if !r.seen[k] && !known(k) {
			r.fail(k, "unknown option (known: %s)", strings.Join(knownOptions, ", "))
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return c, nil
}

func known(k string) bool {
	for _, o := range knownOptions {
		if o == k {
			return true
		}
	}
	return false
}

// tlsConfig reads the TLS options: `ssl = true` (lua-resty-redis's name),
// `ssl_verify` (default true, unlike lua-resty-redis), `server_name`, or a
// table `tls = { ca_file, cert_file, key_file, server_name, verify }`.
// Certificates are verified unless verification is turned off explicitly.
func (r *optionReader) tlsConfig(addr string, addrs []string) (*tls.Config, error) {
	on := r.boolean("ssl", false)
	verify := r.boolean("ssl_verify", true)
	serverName := r.str("server_name")
	var caFile, certFile, keyFile string
	if v, ok := r.get("tls"); ok {
		switch t := v.(type) {
		case bool:
			on = on || t
		case map[string]any:
			on = true
			sub := &optionReader{opts: t, seen: map[string]bool{}}
			caFile = sub.str("ca_file")
			certFile = sub.str("cert_file")
			keyFile = sub.str("key_file")
			if s := sub.str("server_name"); s != "" {
				serverName = s
			}
			verify = sub.boolean("verify", verify)
			for _, k := range slices.Sorted(maps.Keys(t)) {
				if !sub.seen[k] {
					sub.fail("tls."+k, "unknown TLS option (known: ca_file, cert_file, key_file, server_name, verify)")
				}
			}
			if sub.err != nil {
				return nil, sub.err
			}
		default:
			r.fail("tls", "must be a boolean or a table, got %T", v)
			return nil, nil
		}
	}
	if !on {
		return nil, nil
	}
	conf := &tls.Config{ServerName: serverName, InsecureSkipVerify: !verify, MinVersion: tls.VersionTLS12}
	if conf.ServerName == "" && verify {
		// go-redis fills ServerName from the address for single clients;
		// do it for every mode, so cluster and sentinel verify too.
		host := addr
		if host == "" && len(addrs) > 0 {
			host = addrs[0]
		}
		if i := strings.LastIndexByte(host, ':'); i > 0 {
			host = host[:i]
		}
		conf.ServerName = host
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("redis: option tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis: option tls.ca_file: no PEM certificate in %s", caFile)
		}
		conf.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("redis: options tls.cert_file and tls.key_file go together")
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("redis: loading the client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// newClient builds the go-redis client of a configuration. go-redis
// connects lazily, so this does no network I/O.
func (c *config) newClient() goredis.UniversalClient {
	switch c.mode {
	case modeCluster:
		o := c.uo.Cluster()
		if c.replicas {
			o.ReadOnly = true
		}
		return goredis.NewClusterClient(o)
	case modeSentinel:
		o := c.uo.Failover()
		if c.replicas {
			o.RouteRandomly = true
			return goredis.NewFailoverClusterClient(o)
		}
		return goredis.NewFailoverClient(o)
	}
	o := c.uo.Simple()
	o.Network = c.network
	return goredis.NewClient(o)
}
