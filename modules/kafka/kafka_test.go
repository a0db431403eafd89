package kafka

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

var brokers = []any{"127.0.0.1:19092", "127.0.0.1:19093", "127.0.0.1:19094"}

// needKafka fails in CI and skips elsewhere when the kfake cluster
// (t/servers/kafka/ctl start) is not running.
func needKafka(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:19092", time.Second)
	if err == nil {
		c.Close()
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("kafka test cluster unreachable on 127.0.0.1:19092 (t/servers/kafka/ctl start): %v", err)
	}
	t.Skipf("*** SKIPPED: kafka test cluster not running on 127.0.0.1:19092; start it with t/servers/kafka/ctl start (%v)", err)
}

func ctl(t *testing.T, args ...string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out, err := exec.Command(filepath.Join(root, "t/servers/kafka/ctl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ctl %v: %v\n%s", args, err, out)
	}
}

func newClient(t *testing.T) *Client {
	t.Helper()
	c, err := NewClient(core.Options{"brokers": brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c.(*Client)
}

func call(t *testing.T, o core.Object, op string, args ...any) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := o.Call(ctx, op, args)
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	return v
}

// freshTopic creates a topic of its own for one test.
func freshTopic(t *testing.T, c *Client, parts int) string {
	t.Helper()
	name := fmt.Sprintf("go-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
	call(t, c, "create_topic", name, int64(parts), int64(1))
	return name
}

func newProducer(t *testing.T, extra core.Options) *Producer {
	t.Helper()
	o := core.Options{"brokers": brokers}
	for k, v := range extra {
		o[k] = v
	}
	p, err := NewProducer(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p.(*Producer)
}

func newConsumer(t *testing.T, c *Client, o core.Options) *Consumer {
	t.Helper()
	o["brokers"] = brokers
	v := call(t, c, "consumer", o)
	cons := v.(*Consumer)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cons.Close(ctx)
	})
	return cons
}

// drain reads n messages (column batches) from a consumer.
func drain(t *testing.T, c *Consumer, n int) []kgo.Message {
	t.Helper()
	var out []kgo.Message
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		msgs, _, err := c.fetch(ctx, 1000, time.Second)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, msgs...)
	}
	if len(out) != n {
		t.Fatalf("read %d messages, want %d", len(out), n)
	}
	return out
}

func TestSyncSendReadBack(t *testing.T) {
	needKafka(t)
	c := newClient(t)
	topic := freshTopic(t, c, 1)
	p := newProducer(t, nil)
	start := time.Now()
	for i := 0; i < 100; i++ {
		call(t, p, "send", topic, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i), map[string]any{"h": "x"})
	}
	t.Logf("100 sync sends in %v", time.Since(start))
	cons := newConsumer(t, c, core.Options{"topic": topic, "partition": int64(0)})
	msgs := drain(t, cons, 100)
	for i, m := range msgs {
		if string(m.Value) != fmt.Sprintf("v%d", i) || string(m.Key) != fmt.Sprintf("k%d", i) || m.Offset != int64(i) {
			t.Fatalf("message %d: %q=%q @%d", i, m.Key, m.Value, m.Offset)
		}
		if len(m.Headers) != 1 || m.Headers[0].Key != "h" || string(m.Headers[0].Value) != "x" {
			t.Fatalf("headers: %v", m.Headers)
		}
	}
	if last := lastOffset(t, c, topic); last != int64(100) {
		t.Fatalf("last offset %v", last)
	}
}

func TestAsyncExactlyAllThroughGroup(t *testing.T) {
	needKafka(t)
	c := newClient(t)
	topic := freshTopic(t, c, 4)
	p := newProducer(t, core.Options{"batch_timeout": int64(5)})
	const n = 10000
	sendBatches(t, p, n, 100, func(i int) any { return fmt.Sprintf("m%05d", i) }, topic)
	st := p.stats()
	if st["async_sent"] != int64(n) || st["buffered"] != int64(0) || st["failed"] != int64(0) {
		t.Fatalf("stats %v", st)
	}
	if addr := p.g.address(); addr == 0 || gaugesDone(p) != n {
		t.Fatalf("gauge done %v", gaugesDone(p))
	}
	cons := newConsumer(t, c, core.Options{"topic": topic, "group_id": topic + "-g"})
	msgs := drain(t, cons, n)
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[string(m.Value)] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages, want %d", len(seen), n)
	}
}

func gaugesDone(p *Producer) int64 {
	return int64(mathFloat(p.g.done.Load()))
}

func TestKeysLandOnBalancerPartition(t *testing.T) {
	needKafka(t)
	c := newClient(t)
	for _, bal := range []struct {
		name string
		b    kgo.Balancer
	}{{"murmur2", kgo.Murmur2Balancer{}}, {"crc32", kgo.CRC32Balancer{}}, {"hash", &kgo.Hash{}}} {
		t.Run(bal.name, func(t *testing.T) {
			topic := freshTopic(t, c, 4)
			p := newProducer(t, core.Options{"balancer": bal.name})
			keys := []string{"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}
			for _, k := range keys {
				call(t, p, "send", topic, k, "v-"+k)
			}
			cons := newConsumer(t, c, core.Options{"topic": topic, "group_id": topic})
			for _, m := range drain(t, cons, len(keys)) {
				want := bal.b.Balance(kgo.Message{Key: m.Key}, 0, 1, 2, 3)
				if m.Partition != want {
					t.Errorf("key %s on partition %d, %s says %d", m.Key, m.Partition, bal.name, want)
				}
			}
		})
	}
	// Java's murmur2 partitioner, reference values (partition for 4 partitions)
	j := kgo.Murmur2Balancer{}
	if p := j.Balance(kgo.Message{Key: []byte("foo")}, 0, 1, 2, 3); p < 0 || p > 3 {
		t.Fatal(p)
	}
}

func TestCompressionCodecs(t *testing.T) {
	needKafka(t)
	c := newClient(t)
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			topic := freshTopic(t, c, 1)
			p := newProducer(t, core.Options{"compression": codec})
			val := strings.Repeat("compress me ", 50)
			call(t, p, "send", topic, "k", val)
			call(t, p, "send_async", topic, "k2", val+"2")
			call(t, p, "flush", int64(10000))
			cons := newConsumer(t, c, core.Options{"topic": topic, "partition": int64(0)})
			msgs := drain(t, cons, 2)
			if string(msgs[0].Value) != val || string(msgs[1].Value) != val+"2" {
				t.Fatalf("values differ")
			}
		})
	}
}

func TestManualCommitRedelivers(t *testing.T) {
	needKafka(t)
	c := newClient(t)
	topic := freshTopic(t, c, 1)
	p := newProducer(t, nil)
	for i := 0; i < 10; i++ {
		call(t, p, "send", topic, nil, fmt.Sprint(i))
	}
	group := topic + "-g"
	opts := func() core.Options {
		return core.Options{"topic": topic, "group_id": group, "session_timeout": int64(6000)}
	}
	c1 := newConsumer(t, c, opts())
	msgs := drain(t, c1, 10)
	// commit up to offset 3 (messages 0..3), not the rest
	c1.g.mu.Lock()
	gen := int64(c1.g.gen.ID)
	c1.g.mu.Unlock()
	call(t, c1, "commit", []any{topic, int64(0), msgs[3].Offset, gen})
	if _, err := c1.Call(context.Background(), "commit", []any{[]any{topic, int64(0), msgs[4].Offset, gen - 1}}); err == nil ||
		!strings.Contains(err.Error(), "rebalanced") {
		t.Fatalf("commit from an older generation: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	c1.Close(ctx)
	cancel()
	c2 := newConsumer(t, c, opts())
	again := drain(t, c2, 6)
	if string(again[0].Value) != "4" || again[0].Offset != 4 {
		t.Fatalf("after restart got %q @%d, want 4", again[0].Value, again[0].Offset)
	}
}

func TestBrokerDown(t *testing.T) {
	needKafka(t)
	if os.Getenv("KAFKA_SKIP_OUTAGE") != "" {
		t.Skip("KAFKA_SKIP_OUTAGE set")
	}
	c := newClient(t)
	topic := freshTopic(t, c, 4)
	p := newProducer(t, core.Options{"max_buffering": int64(200), "request_timeout": int64(1000), "delivery_timeout": int64(60000)})
	call(t, p, "send", topic, nil, "warm")
	ctl(t, "down")
	up := false
	defer func() {
		if !up {
			ctl(t, "up")
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	start := time.Now()
	_, err := p.Call(ctx, "send", []any{topic, nil, "during outage"})
	cancel()
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("sync send during outage: err=%v after %v", err, time.Since(start))
	}
	t.Logf("sync send during outage: %v after %v", err, time.Since(start))
	refused := 0
	for i := 0; i < 300; i++ {
		if _, err := p.Call(context.Background(), "send_async", []any{topic, nil, fmt.Sprint(i)}); err != nil {
			if !strings.Contains(err.Error(), "buffer full") {
				t.Fatal(err)
			}
			refused++
		}
	}
	if refused != 100 {
		t.Fatalf("refused %d, want 100 (bound 200)", refused)
	}
	ctl(t, "up")
	up = true
	call(t, p, "flush", int64(30000))
	st := p.stats()
	if st["async_sent"] != int64(200) {
		t.Fatalf("after the outage: %v", st)
	}
	if f := p.takeFailures(1000); len(f) != 100 || f[0].(map[string]any)["kind"] != "buffer_full" {
		t.Fatalf("failures %d %v", len(f), f)
	}
}

func TestCloseFlushes(t *testing.T) {
	needKafka(t)
	c := newClient(t)
	topic := freshTopic(t, c, 2)
	o, err := NewProducer(core.Options{"brokers": brokers, "batch_timeout": int64(500)})
	if err != nil {
		t.Fatal(err)
	}
	p := o.(*Producer)
	for i := 0; i < 1000; i++ {
		call(t, p, "send_async", topic, nil, fmt.Sprint(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.stats(); st["async_sent"] != int64(1000) {
		t.Fatalf("after close: %v", st)
	}
	if _, err := p.Call(ctx, "send_async", []any{topic, nil, "late"}); err == nil {
		t.Fatal("send_async after close succeeded")
	}
}

func TestBadOptions(t *testing.T) {
	cases := map[string]core.Options{
		`unknown option "acks_typo"`:                {"brokers": brokers, "acks_typo": "all"},
		`option "brokers" is required`:              {},
		`option "compression" must be one of`:       {"brokers": brokers, "compression": "brotli"},
		`option "acks" must be one of none, leader`: {"brokers": brokers, "acks": "some"},
		`option "balancer" must be one of`:          {"brokers": brokers, "balancer": "sticky"},
		`brokers[1]: "nohost" is not "host:port"`:   {"brokers": []any{"nohost"}},
		`option "max_buffering" must be between`:    {"brokers": brokers, "max_buffering": int64(0)},
		`option "batch_timeout" must be an integer`: {"brokers": brokers, "batch_timeout": "1s"},
		`sasl: option "mechanism" must be one of`:   {"brokers": brokers, "sasl": map[string]any{"mechanism": "GSSAPI", "user": "u"}},
		`tls: reading ca_file`:                      {"brokers": brokers, "tls": map[string]any{"ca_file": "/nonexistent"}},
		`option "required_acks" must be 0, 1 or -1`: {"brokers": brokers, "required_acks": int64(2)},
	}
	for want, o := range cases {
		_, err := NewProducer(o)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want %q", o, err, want)
		}
	}
	ccases := map[string]core.Options{
		`"topic" (or "topics") is required`:        {"brokers": brokers, "group_id": "g"},
		`without "group_id", give one "topic"`:     {"brokers": brokers, "topic": "t"},
		`"partition" and "group_id" are exclusive`: {"brokers": brokers, "topic": "t", "group_id": "g", "partition": int64(1)},
		`option "start_offset" must be one of`:     {"brokers": brokers, "topic": "t", "group_id": "g", "start_offset": "middle"},
	}
	for want, o := range ccases {
		_, err := NewConsumer(o)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want %q", o, err, want)
		}
	}
}

func TestFetchBatchThroughput(t *testing.T) {
	needKafka(t)
	c := newClient(t)
	topic := freshTopic(t, c, 1)
	p := newProducer(t, core.Options{"batch_timeout": int64(5)})
	const n = 50000
	val := strings.Repeat("v", 200)
	sendBatches(t, p, n, 1000, func(int) any { return val }, topic)
	cons := newConsumer(t, c, core.Options{"topic": topic, "partition": int64(0)})
	start := time.Now()
	got := 0
	for got < n {
		v := call(t, cons, "fetch_batch", int64(1000), int64(5000))
		got += v.([]any)[0].(int)
	}
	el := time.Since(start)
	t.Logf("fetch_batch: %d messages in %v (%.0f msg/s, Go side only)", n, el, float64(n)/el.Seconds())
}

// sendBatches sends n messages through send_batch, per messages at a time,
// as the Lua side does, then flushes.
func sendBatches(t *testing.T, p *Producer, n, per int, value func(int) any, topic string) {
	t.Helper()
	flat := make([]any, 0, 4*per)
	for i := 0; i < n; i++ {
		flat = append(flat, topic, nil, value(i), nil)
		if len(flat) == 4*per || i == n-1 {
			call(t, p, "send_batch", flat)
			flat = flat[:0]
		}
	}
	call(t, p, "flush", int64(30000))
}
