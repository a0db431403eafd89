package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	kgo "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// opts reads one options table, remembering which keys were used so that
// unknown ones are reported (a typo must not be silently ignored).
type opts struct {
	what string // "kafka.producer", "kafka.consumer", ...
	m    map[string]any
	used map[string]bool
	err  error
}

func newOpts(what string, m map[string]any) *opts {
	if m == nil {
		m = map[string]any{}
	}
	return &opts{what: what, m: m, used: map[string]bool{}}
}

func (o *opts) fail(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf(o.what+": "+format, args...)
	}
}

func (o *opts) get(key string) (any, bool) {
	o.used[key] = true
	v, ok := o.m[key]
	if _, isNull := v.(core.Null); isNull || v == nil {
		return nil, false
	}
	return v, ok
}

func (o *opts) str(key, def string) string {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	s, isStr := v.(string)
	if !isStr {
		o.fail("option %q must be a string, got %s", key, luaType(v))
		return def
	}
	return s
}

func (o *opts) boolean(key string, def bool) bool {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	b, isBool := v.(bool)
	if !isBool {
		o.fail("option %q must be a boolean, got %s", key, luaType(v))
		return def
	}
	return b
}

func (o *opts) integer(key string, def, min, max int64) int64 {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	n, isInt := toInt(v)
	if !isInt {
		o.fail("option %q must be an integer, got %s", key, luaType(v))
		return def
	}
	if n < min || n > max {
		o.fail("option %q must be between %d and %d, got %d", key, min, max, n)
		return def
	}
	return n
}

// ms reads a duration given in milliseconds.
func (o *opts) ms(key string, def time.Duration, min time.Duration) time.Duration {
	n := o.integer(key, int64(def/time.Millisecond), int64(min/time.Millisecond), 1<<40)
	return time.Duration(n) * time.Millisecond
}

// choice reads a string option that must be one of names (case-insensitive).
func (o *opts) choice(key, def string, names ...string) string {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	s, isStr := v.(string)
	if isStr {
		for _, n := range names {
			if strings.EqualFold(s, n) {
				return n
			}
		}
	}
	o.fail("option %q must be one of %s, got %s", key, strings.Join(names, ", "), describe(v))
	return def
}

// finish reports the first error, or an unknown option.
func (o *opts) finish() error {
	if o.err != nil {
		return o.err
	}
	var unknown []string
	for k := range o.m {
		if !o.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("%s: unknown option %q", o.what, unknown[0])
	}
	return nil
}

func describe(v any) string {
	if s, ok := core.ToString(v); ok {
		return strconv.Quote(s)
	}
	return luaType(v)
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		if x <= 1<<62 {
			return int64(x), true
		}
	case float64:
		if x == float64(int64(x)) {
			return int64(x), true
		}
	}
	return 0, false
}

func luaType(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case core.Null:
		return "ngx.null"
	case bool:
		return "boolean"
	case int64, uint64, float64:
		return "number"
	case string, []byte:
		return "string"
	case []any, map[string]any, map[any]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

// list accepts a Lua sequence, or the empty table (which arrives as an
// empty map).
func list(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case map[string]any:
		if len(x) == 0 {
			return nil, true
		}
	case map[any]any:
		if len(x) == 0 {
			return nil, true
		}
	}
	return nil, false
}

// conn holds what every client needs to reach the cluster.
type conn struct {
	brokers  []string
	clientID string
	tls      *tls.Config
	sasl     sasl.Mechanism
	dialTO   time.Duration
}

// brokers accepts "host:port" strings and lua-resty-kafka's {host=, port=}.
func (o *opts) brokers() []string {
	v, ok := o.get("brokers")
	if !ok {
		o.fail("option \"brokers\" is required (a list of \"host:port\")")
		return nil
	}
	if s, isStr := v.(string); isStr {
		v = []any{s}
	}
	items, isList := list(v)
	if !isList || len(items) == 0 {
		o.fail("option \"brokers\" must be a non-empty list of \"host:port\" strings or {host=, port=} tables")
		return nil
	}
	var out []string
	for i, it := range items {
		switch b := it.(type) {
		case string:
			host, port, err := net.SplitHostPort(b)
			if err != nil || host == "" || port == "" {
				o.fail("brokers[%d]: %q is not \"host:port\"", i+1, b)
				return nil
			}
			out = append(out, b)
		case map[string]any:
			host, _ := b["host"].(string)
			port, okPort := toInt(b["port"])
			if ps, isStr := b["port"].(string); isStr {
				n, err := strconv.Atoi(ps)
				port, okPort = int64(n), err == nil
			}
			if host == "" || !okPort || port <= 0 || port > 65535 {
				o.fail("brokers[%d]: a {host=, port=} table needs a host string and a port number", i+1)
				return nil
			}
			addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
			// what a "host:port" string must pass, so a host like "]"
			// cannot make an address the dialer refuses
			if _, _, err := net.SplitHostPort(addr); err != nil {
				o.fail("brokers[%d]: host %q does not make a \"host:port\" address", i+1, host)
				return nil
			}
			out = append(out, addr)
		default:
			o.fail("brokers[%d] must be a \"host:port\" string or a {host=, port=} table, got %s", i+1, luaType(it))
			return nil
		}
	}
	return out
}

func (o *opts) conn() conn {
	c := conn{
		brokers:  o.brokers(),
		clientID: o.str("client_id", "resty-ffi-kafka"),
		dialTO:   o.ms("connect_timeout", 5*time.Second, time.Millisecond),
	}
	c.tls = o.tlsConfig()
	c.sasl = o.saslMechanism()
	return c
}

// tlsConfig reads tls = true | { verify = true, ca_file =, cert_file =,
// key_file =, server_name = }. Verification is on unless verify = false.
func (o *opts) tlsConfig() *tls.Config {
	v, ok := o.get("tls")
	if !ok {
		return nil
	}
	if b, isBool := v.(bool); isBool {
		if !b {
			return nil
		}
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		o.fail("option \"tls\" must be true or a table, got %s", luaType(v))
		return nil
	}
	t := newOpts(o.what+": tls", m)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	cfg.InsecureSkipVerify = !t.boolean("verify", true)
	cfg.ServerName = t.str("server_name", "")
	if ca := t.str("ca_file", ""); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			t.fail("reading ca_file: %v", err)
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				t.fail("ca_file %s holds no PEM certificate", ca)
			}
			cfg.RootCAs = pool
		}
	}
	certFile, keyFile := t.str("cert_file", ""), t.str("key_file", "")
	if (certFile == "") != (keyFile == "") {
		t.fail("cert_file and key_file go together")
	} else if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.fail("loading the client certificate: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if err := t.finish(); err != nil {
		o.fail("%v", strings.TrimPrefix(err.Error(), o.what+": "))
	}
	return cfg
}

// saslMechanism reads sasl = { mechanism = "PLAIN"|"SCRAM-SHA-256"|
// "SCRAM-SHA-512", user =, password = }. The password never appears in an
// error message.
func (o *opts) saslMechanism() sasl.Mechanism {
	v, ok := o.get("sasl")
	if !ok {
		return nil
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		o.fail("option \"sasl\" must be a table {mechanism=, user=, password=}, got %s", luaType(v))
		return nil
	}
	s := newOpts(o.what+": sasl", m)
	mech := s.choice("mechanism", "PLAIN", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
	user, pass := s.str("user", ""), s.str("password", "")
	if user == "" {
		s.fail("user is required")
	}
	var out sasl.Mechanism
	switch mech {
	case "PLAIN":
		out = plain.Mechanism{Username: user, Password: pass}
	default:
		algo := scram.SHA256
		if mech == "SCRAM-SHA-512" {
			algo = scram.SHA512
		}
		sm, err := scram.Mechanism(algo, user, pass)
		if err != nil {
			s.fail("SCRAM setup failed")
		}
		out = sm
	}
	if err := s.finish(); err != nil {
		o.fail("%v", strings.TrimPrefix(err.Error(), o.what+": "))
		return nil
	}
	return out
}

func (c conn) transport() *kgo.Transport {
	return &kgo.Transport{
		Dial:        c.rawIODial,
		DialTimeout: c.dialTO,
		IdleTimeout: 60 * time.Second,
		MetadataTTL: 6 * time.Second,
		ClientID:    c.clientID,
		TLS:         c.tls,
		SASL:        c.sasl,
	}
}

// rawIODial connects with the connect timeout and returns a core.RawIO
// connection: its reads and writes do not wake the Go runtime's monitor
// thread (core/rawio.go). TLS and SASL go on top.
func (c conn) rawIODial(ctx context.Context, network, addr string) (net.Conn, error) {
	return core.DialRawIO(ctx, &net.Dialer{Timeout: c.dialTO}, network, addr)
}

func (c conn) dialer() *kgo.Dialer {
	return &kgo.Dialer{
		DialFunc:      c.rawIODial,
		ClientID:      c.clientID,
		Timeout:       c.dialTO,
		DualStack:     true,
		TLS:           c.tls,
		SASLMechanism: c.sasl,
	}
}

func (c conn) addr() net.Addr { return kgo.TCP(c.brokers...) }

var errClosed = errors.New("closed")
