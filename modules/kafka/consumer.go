package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// Consumer is one kafka.consumer(opts): a kafka-go Reader, either a member
// of a consumer group (group_id) or reading one explicit partition.
//
// With commit_interval = 0 (the default) nothing is committed until Lua
// calls commit: delivery is at-least-once. With commit_interval > 0 every
// fetched message is marked committed as it is handed to Lua and offsets go
// to the broker every interval (at-most-once if the worker dies between).
type Consumer struct {
	r          *kgo.Reader // an explicit partition
	g          *group      // or a group member
	autoCommit bool
	linger     time.Duration

	mu     sync.Mutex
	closed bool
	once   sync.Once
}

func offsetChoice(o *opts) int64 {
	if o.choice("start_offset", "first", "first", "last") == "last" {
		return kgo.LastOffset
	}
	return kgo.FirstOffset
}

// consumerConfig is a parsed, checked kafka.consumer options table.
type consumerConfig struct {
	reader kgo.ReaderConfig
	group  *kgo.ConsumerGroupConfig // nil: one explicit partition
	offset int64                    // explicit partition: where to start (-1: start_offset)
	linger time.Duration
}

// NewConsumer builds a consumer; the Reader connects in the background.
func NewConsumer(m map[string]any) (*Consumer, error) {
	cc, err := parseConsumer(m)
	if err != nil {
		return nil, err
	}
	if cc.group != nil {
		cfg := cc.reader
		g, err := newGroup(*cc.group, cfg, cfg.QueueCapacity, cfg.CommitInterval)
		if err != nil {
			return nil, fmt.Errorf("kafka.consumer: %w", err)
		}
		return &Consumer{g: g, autoCommit: cfg.CommitInterval > 0, linger: cc.linger}, nil
	}
	r := kgo.NewReader(cc.reader)
	if cc.offset >= 0 {
		if err := r.SetOffset(cc.offset); err != nil {
			r.Close()
			return nil, fmt.Errorf("kafka.consumer: setting the offset: %w", err)
		}
	}
	return &Consumer{r: r, linger: cc.linger}, nil
}

// parseConsumer reads and checks a consumer's options; it does no I/O and
// starts nothing (kgo.NewReader and the group do), so it is what the fuzz
// test drives.
func parseConsumer(m map[string]any) (*consumerConfig, error) {
	o := newOpts("kafka.consumer", m)
	c := o.conn()
	cfg := kgo.ReaderConfig{
		Brokers:               c.brokers,
		GroupID:               o.str("group_id", ""),
		Dialer:                c.dialer(),
		StartOffset:           offsetChoice(o),
		MinBytes:              int(o.integer("min_bytes", 1, 1, 1<<30)),
		MaxBytes:              int(o.integer("max_bytes", 10<<20, 1, 1<<30)),
		MaxWait:               o.ms("max_wait", 500*time.Millisecond, time.Millisecond),
		QueueCapacity:         int(o.integer("queue_capacity", 10000, 1, 1<<24)),
		CommitInterval:        o.ms("commit_interval", 0, 0),
		SessionTimeout:        o.ms("session_timeout", 10*time.Second, time.Millisecond),
		HeartbeatInterval:     o.ms("heartbeat_interval", 3*time.Second, time.Millisecond),
		RebalanceTimeout:      o.ms("rebalance_timeout", 10*time.Second, time.Millisecond),
		JoinGroupBackoff:      o.ms("join_group_backoff", time.Second, time.Millisecond),
		ReadBackoffMin:        o.ms("read_backoff_min", 100*time.Millisecond, time.Millisecond),
		ReadBackoffMax:        o.ms("read_backoff_max", time.Second, time.Millisecond),
		MaxAttempts:           int(o.integer("max_attempts", 3, 1, 1000)),
		WatchPartitionChanges: o.boolean("watch_partition_changes", false),
		ErrorLogger: kgo.LoggerFunc(func(format string, args ...any) {
			core.Logf(core.LevelWarn, "kafka consumer: "+format, args...)
		}),
	}
	switch o.choice("isolation_level", "read_uncommitted", "read_uncommitted", "read_committed") {
	case "read_committed":
		cfg.IsolationLevel = kgo.ReadCommitted
	}
	switch o.choice("group_balancer", "range", "range", "round_robin") {
	case "round_robin":
		cfg.GroupBalancers = []kgo.GroupBalancer{kgo.RoundRobinGroupBalancer{}}
	default:
		cfg.GroupBalancers = []kgo.GroupBalancer{kgo.RangeGroupBalancer{}}
	}
	topic := o.str("topic", "")
	var topics []string
	if v, ok := o.get("topics"); ok {
		items, isList := list(v)
		if !isList {
			o.fail("option \"topics\" must be a list of topic names")
		}
		for _, it := range items {
			s, isStr := it.(string)
			if !isStr || s == "" {
				o.fail("option \"topics\" must hold non-empty strings")
				break
			}
			topics = append(topics, s)
		}
	}
	partition := o.integer("partition", -1, 0, 1<<31-1)
	offset := o.integer("offset", -1, 0, 1<<62)
	linger := o.ms("batch_linger", 2*time.Millisecond, 0)
	if err := o.finish(); err != nil {
		return nil, err
	}
	if topic != "" {
		topics = append([]string{topic}, topics...)
	}
	switch {
	case len(topics) == 0:
		return nil, errors.New("kafka.consumer: option \"topic\" (or \"topics\") is required")
	case cfg.GroupID != "" && partition >= 0:
		return nil, errors.New("kafka.consumer: \"partition\" and \"group_id\" are exclusive (a group assigns partitions)")
	case cfg.GroupID == "" && (partition < 0 || len(topics) != 1):
		return nil, errors.New("kafka.consumer: without \"group_id\", give one \"topic\" and a \"partition\"")
	case cfg.GroupID == "" && cfg.CommitInterval > 0:
		return nil, errors.New("kafka.consumer: \"commit_interval\" needs a \"group_id\" (offsets are committed to a group)")
	case cfg.GroupID != "" && offset >= 0:
		return nil, errors.New("kafka.consumer: \"offset\" is for an explicit partition; a group resumes from its committed offsets")
	}
	cfg.Topic = topics[0]
	cc := &consumerConfig{offset: offset, linger: linger}
	if cfg.GroupID != "" {
		cfg.Topic = ""
		gcfg := kgo.ConsumerGroupConfig{
			ID: cfg.GroupID, Brokers: cfg.Brokers, Dialer: cfg.Dialer, Topics: topics,
			GroupBalancers: cfg.GroupBalancers, HeartbeatInterval: cfg.HeartbeatInterval,
			WatchPartitionChanges: cfg.WatchPartitionChanges, SessionTimeout: cfg.SessionTimeout,
			RebalanceTimeout: cfg.RebalanceTimeout, JoinGroupBackoff: cfg.JoinGroupBackoff,
			StartOffset: cfg.StartOffset, ErrorLogger: cfg.ErrorLogger, Timeout: c.dialTO,
		}
		if err := gcfg.Validate(); err != nil {
			return nil, fmt.Errorf("kafka.consumer: %w", err)
		}
		cc.reader, cc.group = cfg, &gcfg
		return cc, nil
	}
	cfg.Partition = int(partition)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka.consumer: %w", err)
	}
	cc.reader = cfg
	return cc, nil
}

// Call serves the consumer's operations.
func (c *Consumer) Call(ctx context.Context, op string, args []any) (any, error) {
	switch op {
	case "fetch", "recv":
		msgs, gen, err := c.fetch(ctx, 1, timeoutArg(args, 0))
		if err != nil || len(msgs) == 0 {
			return nil, err
		}
		m := msgs[0]
		return map[string]any{
			"topic": m.Topic, "partition": m.Partition, "offset": m.Offset,
			"key": nilIfEmpty(m.Key), "value": m.Value, "headers": headersOut(m.Headers),
			"time": m.Time.UnixMilli(), "generation": gen,
		}, nil
	case "fetch_batch":
		max := 1000
		if len(args) > 0 {
			if v, ok := toInt(args[0]); ok && v > 0 {
				max = int(min(v, 1<<20))
			}
		}
		msgs, gen, err := c.fetch(ctx, max, timeoutArg(args, 1))
		if err != nil || len(msgs) == 0 {
			return nil, err
		}
		return columns(msgs, gen), nil
	case "commit":
		return c.commit(ctx, args)
	case "stats":
		if c.g != nil {
			return map[string]any{"queue_length": len(c.g.msgs), "queue_capacity": cap(c.g.msgs)}, nil
		}
		s := c.r.Stats()
		return map[string]any{
			"messages": s.Messages, "bytes": s.Bytes, "fetches": s.Fetches, "errors": s.Errors,
			"timeouts": s.Timeouts, "rebalances": s.Rebalances, "lag": s.Lag, "offset": s.Offset,
			"queue_length": s.QueueLength, "queue_capacity": s.QueueCapacity,
			"topic": s.Topic, "partition": s.Partition,
		}, nil
	}
	return nil, core.UnknownOp("kafka consumer", op)
}

func timeoutArg(args []any, i int) time.Duration {
	if i < len(args) {
		if v, ok := toInt(args[i]); ok && v >= 0 {
			return time.Duration(v) * time.Millisecond
		}
	}
	return 10 * time.Second
}

// fetch waits up to timeout for a first message, then takes more while they
// come within the linger (a couple of ms), up to max. No messages and no
// error means the timeout passed. Canceling FetchMessage loses nothing: a
// message is either returned or stays in the Reader's queue.
func (c *Consumer) fetch(ctx context.Context, max int, timeout time.Duration) ([]kgo.Message, int32, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, 0, errClosed
	}
	first, cancel := context.WithTimeout(ctx, timeout)
	m, gen, err := c.next(first)
	cancel()
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, 0, nil
		}
		return nil, 0, fmt.Errorf("kafka fetch: %w", err)
	}
	msgs := make([]kgo.Message, 1, min(max, 1024))
	msgs[0] = m
	if max > 1 {
		more, cancel := context.WithTimeout(ctx, c.linger)
		for len(msgs) < max {
			m, g2, err := c.next(more)
			if err != nil {
				break
			}
			if g2 != gen {
				// a new generation began: keep batches within one
				c.g.unread(m, g2)
				break
			}
			msgs = append(msgs, m)
		}
		cancel()
	}
	if c.autoCommit {
		c.g.mark(msgs, gen)
	}
	return msgs, gen, nil
}

func (c *Consumer) next(ctx context.Context) (kgo.Message, int32, error) {
	if c.g != nil {
		return c.g.next(ctx)
	}
	m, err := c.r.FetchMessage(ctx)
	return m, 0, err
}

// columns lays a batch out as parallel arrays, which Lua decodes with no
// per-message key strings: { n, topics, partitions, offsets, keys, values,
// times, headers, generation } (headers is nil when no message has any).
func columns(msgs []kgo.Message, gen int32) []any {
	n := len(msgs)
	topics := make([]any, n)
	parts := make([]int64, n)
	offs := make([]int64, n)
	keys := make([]any, n)
	vals := make([]any, n)
	times := make([]int64, n)
	var hdrs []any
	for i := range msgs {
		m := &msgs[i]
		topics[i] = m.Topic
		parts[i] = int64(m.Partition)
		offs[i] = m.Offset
		keys[i] = nilIfEmpty(m.Key)
		vals[i] = m.Value
		times[i] = m.Time.UnixMilli()
		if len(m.Headers) > 0 {
			if hdrs == nil {
				hdrs = make([]any, n)
			}
			hdrs[i] = headersOut(m.Headers)
		}
	}
	var h any
	if hdrs != nil {
		h = hdrs
	}
	return []any{n, topics, parts, offs, keys, vals, times, h, gen}
}

// commit takes a flat array topic, partition, offset, generation, ... (Lua
// reduces a batch to the highest offset per partition) and commits each
// offset+1, as Kafka counts "the next message to read". Offsets fetched in
// an older generation are refused (see group).
func (c *Consumer) commit(ctx context.Context, args []any) (any, error) {
	if c.g == nil {
		return nil, errors.New("kafka commit: this consumer has no group_id (nothing to commit to)")
	}
	if len(args) != 1 {
		return nil, errors.New("kafka commit: one array expected")
	}
	flat, ok := list(args[0])
	if !ok || len(flat)%4 != 0 {
		return nil, errors.New("kafka commit: a flat array of (topic, partition, offset, generation) expected")
	}
	offsets := map[string]map[int]int64{}
	gen := int64(-1)
	for i := 0; i < len(flat); i += 4 {
		topic, okT := flat[i].(string)
		part, okP := toInt(flat[i+1])
		off, okO := toInt(flat[i+2])
		g, okG := toInt(flat[i+3])
		if !okT || !okP || !okO || !okG {
			return nil, fmt.Errorf("kafka commit: entry %d is not a fetched message (topic, partition, offset, generation)", i/4+1)
		}
		if gen >= 0 && g != gen {
			return nil, fmt.Errorf("kafka commit: %w", errRebalanced)
		}
		gen = g
		if offsets[topic] == nil {
			offsets[topic] = map[int]int64{}
		}
		if cur, seen := offsets[topic][int(part)]; !seen || off > cur {
			offsets[topic][int(part)] = off
		}
	}
	if len(offsets) == 0 {
		return true, nil
	}
	if err := c.g.commit(offsets, int32(gen)); err != nil {
		return nil, fmt.Errorf("kafka commit: %w", err)
	}
	return true, nil
}

// Close leaves the group (committing what commit_interval had marked) within
// ctx's deadline.
func (c *Consumer) Close(ctx context.Context) error {
	var err error
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		if c.g != nil {
			err = c.g.close(ctx)
			return
		}
		done := make(chan error, 1)
		go func() { done <- c.r.Close() }()
		select {
		case err = <-done:
		case <-ctx.Done():
			err = errors.New("kafka consumer: close did not finish by the deadline")
		}
	})
	return err
}
