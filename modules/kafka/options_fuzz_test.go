package kafka

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/internal/optfuzz"
)

// The kafka option parsers, fuzzed from option tables: parseProducer and
// parseConsumer (NewProducer starts its pump, NewConsumer a Reader or a
// group member, both dial in the background) and NewClient, which only
// builds a lazy Transport.

var connSeeds = []core.Options{
	{"brokers": []any{"127.0.0.1:19092", "127.0.0.1:19093"}, "client_id": "app", "connect_timeout": int64(2000)},
	{"brokers": []any{map[string]any{"host": "127.0.0.1", "port": int64(19094)}}, "tls": true},
	{"brokers": "[::1]:9092", "tls": map[string]any{"verify": false, "server_name": "kafka.test"}},
	{"brokers": []any{"k:9092"}, "sasl": map[string]any{"mechanism": "SCRAM-SHA-512", "user": "u", "password": "sasl-secret"}},
	{"brokers": map[string]any{}},
	{"brokers": []any{map[string]any{"host": "h", "port": "70000"}}},
}

func seeds(extra ...core.Options) []core.Options {
	out := append([]core.Options(nil), connSeeds...)
	for _, e := range extra {
		m := core.Options{"brokers": []any{"127.0.0.1:19092"}}
		for k, v := range e {
			m[k] = v
		}
		out = append(out, m)
	}
	return out
}

func FuzzKafkaProducerOptions(f *testing.F) {
	optfuzz.Fuzz(f, seeds(
		core.Options{"acks": "leader", "compression": "zstd", "balancer": "crc32", "max_buffering": int64(100)},
		core.Options{"required_acks": int64(-1), "batch_size": int64(500), "batch_bytes": int64(1 << 20), "batch_timeout": int64(5)},
		core.Options{"backoff_min": int64(500), "backoff_max": int64(100), "delivery_timeout": int64(1) << 41},
		core.Options{"max_attempts": int64(0), "allow_auto_topic_creation": false, "gauge": int64(4096)},
	), "kafka.producer: ", parseProducer, func(t *testing.T, opts core.Options, pc *producerConfig) {
		checkConn(t, opts, pc.conn)
		if pc.maxBuffer < 1 || pc.maxFailures < 0 || pc.batchSize < 1 || pc.batchBytes < 1 || pc.attempts < 1 {
			t.Fatalf("counts: %+v", pc)
		}
		for key, d := range map[string]time.Duration{
			"delivery_timeout": pc.deliveryTimeout, "backoff_min": pc.backoffMin,
			"request_timeout": pc.requestTimeout, "batch_timeout": pc.batchTimeout,
		} {
			if d < time.Millisecond || !optfuzz.Exact(opts, key, d) {
				t.Fatalf("%s = %v from %#v", key, d, opts[key])
			}
		}
		if pc.backoffMax < pc.backoffMin {
			t.Fatalf("backoff max %v below min %v", pc.backoffMax, pc.backoffMin)
		}
		if pc.bal() == nil {
			t.Fatal("no balancer")
		}
	})
}

func FuzzKafkaConsumerOptions(f *testing.F) {
	optfuzz.Fuzz(f, seeds(
		core.Options{"topic": "t", "group_id": "g", "commit_interval": int64(1000), "start_offset": "last"},
		core.Options{"topics": []any{"a", "b"}, "group_id": "g", "group_balancer": "round_robin", "session_timeout": int64(6000)},
		core.Options{"topic": "t", "partition": int64(0), "offset": int64(42), "min_bytes": int64(1), "max_bytes": int64(1 << 20)},
		core.Options{"topic": "t", "partition": int64(2), "isolation_level": "read_committed", "max_wait": int64(100)},
		core.Options{"topic": "t", "partition": int64(0), "group_id": "g"},
		core.Options{"topic": "t", "partition": int64(0), "min_bytes": int64(100), "max_bytes": int64(10)},
	), "kafka.consumer: ", parseConsumer, func(t *testing.T, opts core.Options, cc *consumerConfig) {
		r := cc.reader
		if len(r.Brokers) == 0 || cc.linger < 0 {
			t.Fatalf("brokers %q, linger %v", r.Brokers, cc.linger)
		}
		if r.MinBytes < 1 || r.MaxBytes < r.MinBytes || r.QueueCapacity < 1 || r.MaxAttempts < 1 {
			t.Fatalf("sizes: min %d, max %d, queue %d, attempts %d", r.MinBytes, r.MaxBytes, r.QueueCapacity, r.MaxAttempts)
		}
		for key, d := range map[string]time.Duration{
			"max_wait": r.MaxWait, "session_timeout": r.SessionTimeout, "heartbeat_interval": r.HeartbeatInterval,
			"rebalance_timeout": r.RebalanceTimeout, "read_backoff_min": r.ReadBackoffMin,
		} {
			if d < time.Millisecond || !optfuzz.Exact(opts, key, d) {
				t.Fatalf("%s = %v from %#v", key, d, opts[key])
			}
		}
		if cc.group != nil {
			// a group member: topics to join, no explicit partition or offset
			if len(cc.group.Topics) == 0 || cc.group.ID == "" || r.Topic != "" || cc.offset >= 0 {
				t.Fatalf("group %+v, topic %q, offset %d", cc.group, r.Topic, cc.offset)
			}
			return
		}
		if r.Topic == "" || r.Partition < 0 || r.GroupID != "" || r.CommitInterval != 0 {
			t.Fatalf("partition reader: topic %q, partition %d, group %q, commit interval %v",
				r.Topic, r.Partition, r.GroupID, r.CommitInterval)
		}
	})
}

func FuzzKafkaClientOptions(f *testing.F) {
	optfuzz.Fuzz(f, seeds(core.Options{"request_timeout": int64(3000)}), "kafka: ", NewClient,
		func(t *testing.T, opts core.Options, obj core.Object) {
			c := obj.(*Client)
			defer c.Close(context.Background())
			checkConn(t, opts, c.conn)
			if c.client.Timeout < time.Millisecond || !optfuzz.Exact(opts, "request_timeout", c.client.Timeout) {
				t.Fatalf("request_timeout %v from %#v", c.client.Timeout, opts["request_timeout"])
			}
		})
}

// checkConn: every broker is a "host:port", the dial timeout is what was
// asked, and certificates are verified unless the table said otherwise.
func checkConn(t *testing.T, opts core.Options, c conn) {
	t.Helper()
	if len(c.brokers) == 0 || c.dialTO < time.Millisecond {
		t.Fatalf("brokers %q, dial timeout %v", c.brokers, c.dialTO)
	}
	for _, b := range c.brokers {
		if host, port, err := net.SplitHostPort(b); err != nil || host == "" || port == "" {
			t.Fatalf("broker %q is not host:port", b)
		}
	}
	if c.tls != nil && c.tls.InsecureSkipVerify {
		if sub, _ := opts["tls"].(map[string]any); sub == nil || sub["verify"] != false {
			t.Fatalf("verification off though the options did not turn it off: %#v", opts["tls"])
		}
	}
}
