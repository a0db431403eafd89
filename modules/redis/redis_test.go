package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// The servers come from t/servers/redis/ctl start.
const (
	singleAddr = "127.0.0.1:16379"
	authAddr   = "127.0.0.1:16380"
	password   = "rffi-secret"
)

var clusterAddrs = []any{"127.0.0.1:17001", "127.0.0.1:17002", "127.0.0.1:17003"}
var sentinelAddrs = []any{"127.0.0.1:26379", "127.0.0.1:26380", "127.0.0.1:26381"}

// needServer fails in CI and skips elsewhere when addr does not answer.
func needServer(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return
	}
	msg := fmt.Sprintf("redis test server %s unreachable (%v): run t/servers/redis/ctl start", addr, err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPING: " + msg)
}

func open(t *testing.T, opts core.Options) *Runtime {
	t.Helper()
	o, err := New(opts)
	if err != nil {
		t.Fatalf("New(%v): %v", opts, err)
	}
	r := o.(*Runtime)
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func call(t *testing.T, o core.Object, op string, args ...any) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := o.Call(ctx, op, args)
	if err != nil {
		t.Fatalf("%s %v: %v", op, args, err)
	}
	return v
}

func callErr(o core.Object, timeout time.Duration, op string, args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return o.Call(ctx, op, args)
}

func eq(t *testing.T, got, want any) {
	t.Helper()
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}

func key(t *testing.T, suffix string) string {
	return "rffi:go:" + t.Name() + ":" + suffix
}

func TestOptions(t *testing.T) {
	cases := []struct {
		opts core.Options
		mode string
		err  string
	}{
		{core.Options{}, modeSingle, ""},
		{core.Options{"host": "127.0.0.1", "port": int64(1)}, modeSingle, ""},
		{core.Options{"addr": "unix:/tmp/x.sock"}, modeSingle, ""},
		{core.Options{"addrs": []any{"a:1", "b:2"}}, modeCluster, ""},
		{core.Options{"master_name": "m", "sentinel_addrs": []any{"a:1"}}, modeSentinel, ""},
		{core.Options{"mode": "sentinel"}, "", "master name"},
		{core.Options{"mode": "cluster", "addrs": map[string]any{}}, "", "seed address"},
		{core.Options{"nope": true}, "", "unknown option"},
		{core.Options{"db": "x"}, "", "must be a number"},
		{core.Options{"protocol": int64(4)}, "", "must be 2 or 3"},
		{core.Options{"tls": map[string]any{"ca_file": "/nonexistent"}}, "", "ca_file"},
		{core.Options{"tls": map[string]any{"bogus": true}}, "", "unknown TLS option"},
	}
	for _, c := range cases {
		cfg, err := parseOptions(c.opts)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want one containing %q", c.opts, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", c.opts, err)
			continue
		}
		if cfg.mode != c.mode {
			t.Errorf("%v: mode %s, want %s", c.opts, cfg.mode, c.mode)
		}
	}
	cfg, _ := parseOptions(core.Options{"addr": "unix:/tmp/x.sock"})
	if cfg.network != "unix" || cfg.uo.Addrs[0] != "/tmp/x.sock" {
		t.Errorf("unix address parsed as %s %v", cfg.network, cfg.uo.Addrs)
	}
}

func TestTLSVerifiesByDefault(t *testing.T) {
	cfg, err := parseOptions(core.Options{"addr": "redis.example:6380", "ssl": true})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.uo.TLSConfig == nil || cfg.uo.TLSConfig.InsecureSkipVerify || cfg.uo.TLSConfig.ServerName != "redis.example" {
		t.Fatalf("TLS config %+v: want verification on, server name redis.example", cfg.uo.TLSConfig)
	}
	cfg, _ = parseOptions(core.Options{"tls": map[string]any{"verify": false}})
	if !cfg.uo.TLSConfig.InsecureSkipVerify {
		t.Fatal("verify = false must turn verification off")
	}
}

func TestReplyTypes(t *testing.T) {
	needServer(t, singleAddr)
	r := open(t, core.Options{"addr": singleAddr})
	k := key(t, "k")
	call(t, r, "del", k, k+"l", k+"h")
	eq(t, call(t, r, "set", k, "v"), "OK")
	eq(t, call(t, r, "get", k), "v")
	eq(t, call(t, r, "get", k+"missing"), core.Null{})
	call(t, r, "del", k+"n")
	eq(t, call(t, r, "incr", k+"n"), int64(1))
	eq(t, call(t, r, "rpush", k+"l", "a", int64(2), 1.5, true), int64(4))
	eq(t, call(t, r, "lrange", k+"l", int64(0), int64(-1)), []any{"a", "2", "1.5", "true"})
	eq(t, call(t, r, "mget", k, k+"missing"), []any{"v", nil})
	call(t, r, "hset", k+"h", "f", "x")
	eq(t, call(t, r, "hgetall", k+"h"), []any{"f", "x"})
	// error reply: a replyError with detail true
	_, err := callErr(r, time.Second, "incr", k)
	var re replyError
	if !errors.As(err, &re) || !strings.HasPrefix(re.Error(), "ERR value is not an integer") {
		t.Fatalf("incr on a string: %v, want an ERR reply", err)
	}
	// errors nested in an array reply become {false, msg}
	eq(t, call(t, r, "eval", "return {1, redis.error_reply('boom'), 'x'}", int64(0)),
		[]any{int64(1), []any{false, "ERR boom"}, "x"})
	// integers beyond 2^53 arrive as numbers (floats), as tonumber() gives
	call(t, r, "set", k+"big", "9007199254740993")
	eq(t, call(t, r, "incrby", k+"big", int64(0)), float64(9007199254740993))
	call(t, r, "del", k, k+"l", k+"h", k+"n", k+"big")
}

func TestBinarySafe(t *testing.T) {
	needServer(t, singleAddr)
	r := open(t, core.Options{"addr": singleAddr})
	k := key(t, "\x00\r\n\xff")
	v := "a\x00b\r\n$-1\r\n\xfe"
	eq(t, call(t, r, "set", k, v), "OK")
	eq(t, call(t, r, "get", k), v)
	eq(t, call(t, r, "del", k), int64(1))
}

func pipeArgs(cmds ...[]any) []any {
	var out []any
	for _, c := range cmds {
		out = append(out, int64(len(c)))
		out = append(out, c...)
	}
	return out
}

func TestPipeline(t *testing.T) {
	needServer(t, singleAddr)
	r := open(t, core.Options{"addr": singleAddr})
	k := key(t, "k")
	eq(t, call(t, r, ".pipe", pipeArgs([]any{"set", k, "1"})...), []any{"OK"})
	eq(t, call(t, r, ".pipe", pipeArgs(
		[]any{"get", k}, []any{"hget", k, "f"}, []any{"get", k + "none"}, []any{"incr", k})...),
		[]any{"1", []any{false, "WRONGTYPE Operation against a key holding the wrong kind of value"},
			core.Null{}, int64(2)})
	var cmds [][]any
	for i := 0; i < 1000; i++ {
		cmds = append(cmds, []any{"incr", k})
	}
	res := call(t, r, ".pipe", pipeArgs(cmds...)...).([]any)
	if len(res) != 1000 || res[999] != int64(1002) {
		t.Fatalf("pipeline of 1000: %d replies, last %v", len(res), res[len(res)-1])
	}
	eq(t, call(t, r, ".pipe"), []any{})
	if _, err := callErr(r, time.Second, ".pipe", int64(5), "get"); err == nil {
		t.Fatal("a malformed command list must fail")
	}
	call(t, r, "del", k)
}

func TestTransaction(t *testing.T) {
	needServer(t, singleAddr)
	r := open(t, core.Options{"addr": singleAddr})
	k := key(t, "k")
	call(t, r, "del", k)
	eq(t, call(t, r, ".tx", pipeArgs([]any{"set", k, "a"}, []any{"incr", k}, []any{"get", k})...),
		[]any{"OK", []any{false, "ERR value is not an integer or out of range"}, "a"})
	_, err := callErr(r, time.Second, ".tx", pipeArgs([]any{"set", k}, []any{"get", k})...)
	if err == nil || !strings.Contains(err.Error(), "EXECABORT") {
		t.Fatalf("a transaction with a malformed command: %v, want EXECABORT", err)
	}

	// MULTI ... EXEC as separate calls on a dedicated connection
	c := call(t, r, ".conn").(core.Object)
	eq(t, call(t, c, "multi"), "OK")
	eq(t, call(t, c, "set", k, "b"), "QUEUED")
	eq(t, call(t, c, "get", k), "QUEUED")
	eq(t, call(t, c, "exec"), []any{"OK", "b"})
	eq(t, call(t, c, "multi"), "OK")
	eq(t, call(t, c, "set", k, "c"), "QUEUED")
	c.Close(context.Background()) // discards the open MULTI
	eq(t, call(t, r, "get", k), "b")
	call(t, r, "del", k)
}

func TestPubSub(t *testing.T) {
	needServer(t, singleAddr)
	r := open(t, core.Options{"addr": singleAddr})
	ch := key(t, "ch")
	s := call(t, r, ".sub", "subscribe", ch, ch+"2").(core.Object)
	defer s.Close(context.Background())
	eq(t, call(t, s, "read"), []any{"subscribe", ch, int64(1)})
	eq(t, call(t, s, "read"), []any{"subscribe", ch + "2", int64(2)})
	// a read that times out keeps the subscription
	if _, err := callErr(s, 100*time.Millisecond, "read"); !errors.Is(err, core.ErrTimeout) {
		t.Fatalf("read with nothing published: %v, want timeout", err)
	}
	eq(t, call(t, r, "publish", ch, "hello"), int64(1))
	eq(t, call(t, s, "read"), []any{"message", ch, "hello"})
	eq(t, call(t, r, "publish", ch+"2", "x\x00y"), int64(1))
	eq(t, call(t, s, "recv"), map[string]any{"channel": ch + "2", "payload": "x\x00y"})
	eq(t, call(t, s, "unsubscribe", ch), []any{"unsubscribe", ch, int64(1)})
	eq(t, call(t, s, "psubscribe", ch+"*"), []any{"psubscribe", ch + "*", int64(2)})
	call(t, r, "publish", ch+"3", "p")
	eq(t, call(t, s, "read"), []any{"pmessage", ch + "*", ch + "3", "p"})

	// closing a handle while a read waits ends that read at once
	done := make(chan error, 1)
	go func() { _, err := callErr(s, 5*time.Second, "recv"); done <- err }()
	time.Sleep(50 * time.Millisecond)
	s.Close(context.Background())
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("recv on a closed subscription returned no error")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("recv did not end when the subscription closed")
	}
}

func TestTimeoutAndRefused(t *testing.T) {
	needServer(t, singleAddr)
	r := open(t, core.Options{"addr": singleAddr})
	k := key(t, "list")
	start := time.Now()
	_, err := callErr(r, 200*time.Millisecond, "blpop", k, int64(2))
	if !errors.Is(err, core.ErrTimeout) || time.Since(start) > time.Second {
		t.Fatalf("blpop 2s with a 200 ms deadline: %v after %v, want timeout after ~200ms", err, time.Since(start))
	}
	// the client is still usable
	eq(t, call(t, r, "ping"), "PONG")

	dead := open(t, core.Options{"addr": "127.0.0.1:1", "max_retries": int64(0)})
	_, err = callErr(dead, time.Second, "get", "x")
	if err == nil || err.Error() != "connection refused" {
		t.Fatalf("get on a closed port: %v, want connection refused", err)
	}
	_, err = callErr(dead, time.Second, ".ping")
	if err == nil || err.Error() != "connection refused" {
		t.Fatalf(".ping on a closed port: %v, want connection refused", err)
	}
}

func TestUnixSocket(t *testing.T) {
	needServer(t, singleAddr)
	root, _ := os.Getwd()
	sock := root + "/../../.run/redis/redis.sock"
	if env := os.Getenv("RFFI_RUN"); env != "" {
		sock = env + "/redis/redis.sock"
	}
	if _, err := os.Stat(sock); err != nil {
		t.Skip("no unix socket at " + sock)
	}
	r := open(t, core.Options{"addr": "unix:" + sock})
	eq(t, call(t, r, "ping"), "PONG")
}

func TestAuth(t *testing.T) {
	needServer(t, authAddr)
	r := open(t, core.Options{"addr": authAddr, "password": password})
	eq(t, call(t, r, "ping"), "PONG")
	bad := open(t, core.Options{"addr": authAddr, "password": "wrong", "max_retries": int64(0)})
	_, err := callErr(bad, time.Second, "ping")
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v, want WRONGPASS", err)
	}
	none := open(t, core.Options{"addr": authAddr})
	_, err = callErr(none, time.Second, "get", "x")
	if err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Fatalf("no password: %v, want NOAUTH", err)
	}
}

func TestCluster(t *testing.T) {
	needServer(t, "127.0.0.1:17001")
	r := open(t, core.Options{"addrs": clusterAddrs})
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("%s%d", key(t, "k"), i)
		eq(t, call(t, r, "set", k, int64(i)), "OK")
		eq(t, call(t, r, "get", k), fmt.Sprint(i))
	}
	// a pipeline spanning slots of every master
	var cmds [][]any
	for i := 0; i < 50; i++ {
		cmds = append(cmds, []any{"get", fmt.Sprintf("%s%d", key(t, "k"), i)})
	}
	res := call(t, r, ".pipe", pipeArgs(cmds...)...).([]any)
	eq(t, res[49], "49")
	// MULTI/EXEC via TxPipeline on one slot
	k := "{" + key(t, "tx") + "}"
	eq(t, call(t, r, ".tx", pipeArgs([]any{"set", k + "a", "1"}, []any{"incr", k + "a"})...), []any{"OK", int64(2)})
	for i := 0; i < 50; i++ {
		call(t, r, "del", fmt.Sprintf("%s%d", key(t, "k"), i))
	}
	call(t, r, "del", k+"a")
}

// TestClusterMoved moves a key's slot to another master behind the
// client's back: the next command gets MOVED and must still succeed.
func TestClusterMoved(t *testing.T) {
	needServer(t, "127.0.0.1:17001")
	ctx := context.Background()
	r := open(t, core.Options{"addrs": clusterAddrs})
	k := key(t, "moving")
	eq(t, call(t, r, "set", k, "here"), "OK")
	if err := moveSlot(ctx, k); err != nil {
		t.Fatal(err)
	}
	eq(t, call(t, r, "get", k), "here")
	eq(t, call(t, r, "del", k), int64(1))
}

// moveSlot migrates the slot of key from its owner to the next master,
// the way redis-cli --cluster reshard does it.
func moveSlot(ctx context.Context, key string) error {
	admin := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:17001"})
	defer admin.Close()
	slot, err := admin.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return err
	}
	slots, err := admin.ClusterSlots(ctx).Result()
	if err != nil {
		return err
	}
	var src string
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			src = s.Nodes[0].Addr
		}
	}
	dst := "127.0.0.1:17001"
	if src == dst {
		dst = "127.0.0.1:17002"
	}
	from := goredis.NewClient(&goredis.Options{Addr: src})
	defer from.Close()
	to := goredis.NewClient(&goredis.Options{Addr: dst})
	defer to.Close()
	srcID, err := from.Do(ctx, "cluster", "myid").Text()
	if err != nil {
		return err
	}
	dstID, err := to.Do(ctx, "cluster", "myid").Text()
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(dst)
	steps := []struct {
		c    *goredis.Client
		args []any
	}{
		{to, []any{"cluster", "setslot", slot, "importing", srcID}},
		{from, []any{"cluster", "setslot", slot, "migrating", dstID}},
		{from, []any{"migrate", host, port, key, 0, 5000}},
		{to, []any{"cluster", "setslot", slot, "node", dstID}},
		{from, []any{"cluster", "setslot", slot, "node", dstID}},
	}
	for _, s := range steps {
		if err := s.c.Do(ctx, s.args...).Err(); err != nil {
			return fmt.Errorf("%v: %w", s.args, err)
		}
	}
	return nil
}

func TestSentinel(t *testing.T) {
	needServer(t, "127.0.0.1:26379")
	r := open(t, core.Options{"master_name": "mymaster", "sentinel_addrs": sentinelAddrs})
	k := key(t, "k")
	eq(t, call(t, r, "set", k, "v"), "OK")
	eq(t, call(t, r, "get", k), "v")
	ro := open(t, core.Options{"master_name": "mymaster", "sentinel_addrs": sentinelAddrs, "read_from_replicas": true})
	eq(t, call(t, ro, "ping"), "PONG")
	call(t, r, "del", k)
}

func TestUnknownOp(t *testing.T) {
	r := open(t, core.Options{"addr": singleAddr})
	if _, err := callErr(r, time.Second, ".nope"); err == nil {
		t.Fatal("an unknown operation must fail")
	}
	if _, err := callErr(r, time.Second, "get", []any{"x"}); err == nil || !strings.Contains(err.Error(), "table") {
		t.Fatalf("a table argument: %v, want an error naming the table", err)
	}
}

func TestTLS(t *testing.T) {
	needServer(t, "127.0.0.1:17005")
	run := os.Getenv("RFFI_RUN")
	if run == "" {
		run = "../../.run"
	}
	dir := run + "/redis/tls/"
	ok := open(t, core.Options{"addr": "127.0.0.1:17005", "tls": map[string]any{"ca_file": dir + "ca.crt"}})
	eq(t, call(t, ok, "ping"), "PONG")
	// verification is on by default: the system roots do not know the test CA
	strict := open(t, core.Options{"addr": "127.0.0.1:17005", "ssl": true, "max_retries": int64(0)})
	if _, err := callErr(strict, 2*time.Second, "ping"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an unknown CA with verification on: %v, want a certificate error", err)
	}
	// the certificate names 127.0.0.1 and localhost, not this name
	wrongName := open(t, core.Options{"addr": "127.0.0.1:17005", "max_retries": int64(0),
		"tls": map[string]any{"ca_file": dir + "ca.crt", "server_name": "redis.example"}})
	if _, err := callErr(wrongName, 2*time.Second, "ping"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a wrong server name: %v, want a certificate error", err)
	}
	insecure := open(t, core.Options{"addr": "127.0.0.1:17005", "ssl": true, "ssl_verify": false})
	eq(t, call(t, insecure, "ping"), "PONG")
	withCert := open(t, core.Options{"addr": "127.0.0.1:17005", "tls": map[string]any{
		"ca_file": dir + "ca.crt", "cert_file": dir + "client.crt", "key_file": dir + "client.key"}})
	eq(t, call(t, withCert, "ping"), "PONG")
}
