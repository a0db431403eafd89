package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

var errBufferFull = errors.New("buffer full")

// Producer is one kafka.producer(opts), on one kafka-go Transport
// (connections and metadata shared by the async writers; send has leader
// connections of its own and takes only metadata from it):
//
//   - send waits for the ack: one Produce request per message on a
//     connection to the partition's leader (see direct), so a lone message
//     goes out at once instead of waiting for a batch timeout (kafka-go's
//     Writer waits 1 s by default), which is what makes sequential sync
//     sends fast.
//   - async: send_async / send_batch put messages in a bounded buffer (the
//     queue) that a pump goroutine hands to an Async writer, which batches
//     per partition (batch_size / batch_bytes / batch_timeout). Its
//     Completion callback counts deliveries; a retriable failure goes back
//     to the queue until the message's delivery_timeout, any other failure
//     is kept for Lua's error handler ("failures"). Nothing accepted is
//     dropped without being counted and handed to Lua.
type Producer struct {
	direct *direct // send: one Produce request per message, on leader connections
	async  *kgo.Writer
	// final writes what is left once async is closed (at shutdown): sync,
	// with a short batch timeout
	final       *kgo.Writer
	asyncClosed atomic.Bool
	transport   *kgo.Transport
	g           *gauge

	maxBuffer       int64
	maxFailures     int
	deliveryTimeout time.Duration
	backoffMin      time.Duration
	backoffMax      time.Duration
	requestTimeout  time.Duration

	mu       sync.Mutex
	queue    []kgo.Message // accepted, not yet given to the async writer
	buffered int64         // accepted and not finished
	accepted int64
	done     int64 // finished: delivered + failed + refused
	changed  chan struct{}
	failures []failure
	closing  bool
	st       producerStats

	wake     chan struct{}
	stop     chan struct{}
	pumpDone chan struct{}
	once     sync.Once
}

type producerStats struct {
	delivered, failed, refused, retries, bytes int64
	syncSent, syncFailed, failuresDropped      int64
	errors                                     map[string]int64
}

type failure struct {
	msg  kgo.Message
	err  error
	kind string
}

// meta rides along each async message (kafka-go's WriterData); messages
// accepted together share one.
type meta struct {
	deadline time.Time
}

func requiredAcks(o *opts) kgo.RequiredAcks {
	if v, ok := o.m["required_acks"]; ok && o.m["acks"] == nil {
		// lua-resty-kafka's spelling: 0, 1 or -1
		o.used["required_acks"] = true
		n, isInt := toInt(v)
		switch {
		case isInt && n == 0:
			return kgo.RequireNone
		case isInt && n == 1:
			return kgo.RequireOne
		case isInt && n == -1:
			return kgo.RequireAll
		}
		o.fail("option \"required_acks\" must be 0, 1 or -1, got %s", describe(v))
		return kgo.RequireAll
	}
	o.used["required_acks"] = true
	switch o.choice("acks", "all", "none", "leader", "all") {
	case "none":
		return kgo.RequireNone
	case "leader":
		return kgo.RequireOne
	}
	return kgo.RequireAll
}

func compression(o *opts) kgo.Compression {
	switch o.choice("compression", "none", "none", "gzip", "snappy", "lz4", "zstd") {
	case "gzip":
		return kgo.Gzip
	case "snappy":
		return kgo.Snappy
	case "lz4":
		return kgo.Lz4
	case "zstd":
		return kgo.Zstd
	}
	return 0
}

// balancer names: hash (kafka-go/sarama FNV-1a), round_robin, least_bytes,
// murmur2 (as the Java client places keys), crc32 (as librdkafka's
// consistent_random does). Messages without a key go round robin or random.
func balancer(o *opts) func() kgo.Balancer {
	switch o.choice("balancer", "murmur2", "murmur2", "crc32", "hash", "round_robin", "least_bytes") {
	case "crc32":
		return func() kgo.Balancer { return kgo.CRC32Balancer{} }
	case "hash":
		return func() kgo.Balancer { return &kgo.Hash{} }
	case "round_robin":
		return func() kgo.Balancer { return &kgo.RoundRobin{} }
	case "least_bytes":
		return func() kgo.Balancer { return &kgo.LeastBytes{} }
	}
	return func() kgo.Balancer { return kgo.Murmur2Balancer{} }
}

// producerConfig is a parsed kafka.producer options table.
type producerConfig struct {
	conn         conn
	acks         kgo.RequiredAcks
	comp         kgo.Compression
	bal          func() kgo.Balancer
	batchSize    int
	batchBytes   int64
	batchTimeout time.Duration
	attempts     int
	autoCreate   bool
	gaugeAddr    int64
	// the Producer's own settings, copied into it by NewProducer
	maxBuffer                                               int64
	maxFailures                                             int
	deliveryTimeout, backoffMin, backoffMax, requestTimeout time.Duration
}

// parseProducer reads a producer's options; it does no I/O and starts
// nothing, so it is what the fuzz test drives.
func parseProducer(m core.Options) (*producerConfig, error) {
	o := newOpts("kafka.producer", m)
	pc := &producerConfig{
		conn:            o.conn(),
		acks:            requiredAcks(o),
		comp:            compression(o),
		bal:             balancer(o),
		maxBuffer:       o.integer("max_buffering", 50000, 1, 1<<30),
		maxFailures:     int(o.integer("max_failures", 10000, 0, 1<<30)),
		deliveryTimeout: o.ms("delivery_timeout", 60*time.Second, time.Millisecond),
		backoffMin:      o.ms("backoff_min", 100*time.Millisecond, time.Millisecond),
		backoffMax:      o.ms("backoff_max", time.Second, time.Millisecond),
		requestTimeout:  o.ms("request_timeout", 10*time.Second, time.Millisecond),
		batchSize:       int(o.integer("batch_size", 1000, 1, 1<<20)),
		batchBytes:      o.integer("batch_bytes", 1<<20, 1, 1<<30),
		batchTimeout:    o.ms("batch_timeout", 100*time.Millisecond, time.Millisecond),
		attempts:        int(o.integer("max_attempts", 10, 1, 1000)),
		autoCreate:      o.boolean("allow_auto_topic_creation", true),
		// set by resty.ffi.kafka: the address of the gauge Lua allocated
		gaugeAddr: o.integer("gauge", 0, 0, 1<<62),
	}
	if err := o.finish(); err != nil {
		return nil, err
	}
	if pc.backoffMax < pc.backoffMin {
		pc.backoffMax = pc.backoffMin
	}
	return pc, nil
}

// NewProducer builds a producer from its options; it connects lazily.
func NewProducer(m core.Options) (core.Object, error) {
	pc, err := parseProducer(m)
	if err != nil {
		return nil, err
	}
	p := &Producer{
		maxBuffer:       pc.maxBuffer,
		maxFailures:     pc.maxFailures,
		deliveryTimeout: pc.deliveryTimeout,
		backoffMin:      pc.backoffMin,
		backoffMax:      pc.backoffMax,
		requestTimeout:  pc.requestTimeout,
		changed:         make(chan struct{}),
		wake:            make(chan struct{}, 1),
		stop:            make(chan struct{}),
		pumpDone:        make(chan struct{}),
		st:              producerStats{errors: map[string]int64{}},
	}
	if pc.gaugeAddr != 0 {
		if err := checkGaugeAddress(uintptr(pc.gaugeAddr)); err != nil {
			return nil, err
		}
		p.g = gaugeAt(uintptr(pc.gaugeAddr))
	} else {
		g, err := newGauge()
		if err != nil {
			return nil, err
		}
		p.g = g
	}
	p.transport = pc.conn.transport()
	base := func() *kgo.Writer {
		return &kgo.Writer{
			Addr: pc.conn.addr(), Balancer: pc.bal(), MaxAttempts: pc.attempts,
			WriteBackoffMin: p.backoffMin, WriteBackoffMax: p.backoffMax,
			BatchBytes: pc.batchBytes, ReadTimeout: p.requestTimeout, WriteTimeout: p.requestTimeout,
			RequiredAcks: pc.acks, Compression: pc.comp, Transport: p.transport,
			AllowAutoTopicCreation: pc.autoCreate,
		}
	}
	p.direct = newDirect(&kgo.Client{Addr: pc.conn.addr(), Transport: p.transport, Timeout: p.requestTimeout},
		pc.conn.dialer(), pc.bal(), pc.acks, pc.comp, pc.attempts, p.backoffMin)
	p.async = base()
	p.async.BatchSize, p.async.BatchTimeout = pc.batchSize, pc.batchTimeout
	p.async.Async = true
	p.async.Completion = p.completed
	p.final = base()
	p.final.BatchSize, p.final.BatchTimeout = pc.batchSize, time.Millisecond
	go p.pump()
	return p, nil
}

// Call serves the producer's operations.
func (p *Producer) Call(ctx context.Context, op string, args []any) (any, error) {
	switch op {
	case "send":
		msg, err := messageArgs(args, 0)
		if err != nil {
			return nil, fmt.Errorf("kafka send: %w", err)
		}
		return p.send(ctx, msg)
	case "send_async":
		msg, err := messageArgs(args, 0)
		if err != nil {
			p.refuse(1, err)
			return nil, fmt.Errorf("kafka send_async: %w", err)
		}
		return nil, p.enqueue([]kgo.Message{msg})
	case "send_batch":
		return nil, p.sendBatch(args)
	case "flush":
		return p.flush(ctx, args)
	case "stats":
		return p.stats(), nil
	case "failures":
		n := 1000
		if len(args) > 0 {
			if v, ok := toInt(args[0]); ok && v > 0 {
				n = int(v)
			}
		}
		return p.takeFailures(n), nil
	case "gauge":
		return p.g.address(), nil
	}
	return nil, core.UnknownOp("kafka producer", op)
}

func (p *Producer) send(ctx context.Context, msg kgo.Message) (any, error) {
	p.mu.Lock()
	closing := p.closing
	p.mu.Unlock()
	if closing {
		return nil, errClosed
	}
	sctx, cancel := context.WithTimeout(ctx, p.requestTimeout)
	_, err := p.direct.send(sctx, msg)
	cancel()
	p.mu.Lock()
	if err != nil {
		p.st.syncFailed++
		p.st.errors[errorKind(err)]++
	} else {
		p.st.syncSent++
		p.st.bytes += int64(len(msg.Key) + len(msg.Value))
	}
	p.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			// request_timeout passed: the same answer as the caller's timeout
			return nil, core.ErrTimeout
		}
		return nil, fmt.Errorf("kafka send: %w", err)
	}
	return true, nil
}

// sendBatch takes a flat array topic, key, value, headers, topic, ... (what
// the Lua side accumulates between two hand-overs).
func (p *Producer) sendBatch(args []any) error {
	if len(args) != 1 {
		return errors.New("kafka send_batch: one array expected")
	}
	flat, ok := list(args[0])
	if !ok || len(flat)%4 != 0 {
		return errors.New("kafka send_batch: a flat array of (topic, key, value, headers) quadruples expected")
	}
	msgs := make([]kgo.Message, 0, len(flat)/4)
	var bad error
	for i := 0; i < len(flat); i += 4 {
		msg, err := messageArgs(flat, i)
		if err != nil {
			// counted as finished, so Lua's view of the buffer stays exact
			p.refuse(1, err)
			bad = err
			continue
		}
		msgs = append(msgs, msg)
	}
	if err := p.enqueue(msgs); err != nil {
		return err
	}
	if bad != nil {
		return fmt.Errorf("kafka send_async: %w", bad)
	}
	return nil
}

// refuse counts n messages that were not accepted.
func (p *Producer) refuse(n int, err error) {
	p.mu.Lock()
	p.st.refused += int64(n)
	p.st.errors[errorKind(err)] += int64(n)
	p.finishLocked(int64(n), 0)
	p.mu.Unlock()
}

// enqueue accepts messages into the bounded buffer. Those beyond the bound
// are refused and handed to the error handler (Lua's view of the level
// normally refuses them before they get here).
func (p *Producer) enqueue(msgs []kgo.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	md := &meta{deadline: time.Now().Add(p.deliveryTimeout)} // shared by the chunk
	p.mu.Lock()
	if p.closing {
		for _, m := range msgs {
			p.failLocked(m, errClosed)
		}
		p.finishLocked(int64(len(msgs)), 0)
		p.mu.Unlock()
		return errClosed
	}
	refused := 0
	for _, m := range msgs {
		if p.buffered >= p.maxBuffer {
			p.failLocked(m, errBufferFull)
			refused++
			continue
		}
		m.WriterData = md
		p.queue = append(p.queue, m)
		p.buffered++
		p.accepted++
	}
	if refused > 0 {
		p.st.refused += int64(refused)
		p.finishLocked(int64(refused), 0)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	if refused > 0 {
		return fmt.Errorf("kafka send_async: %w (%d messages refused)", errBufferFull, refused)
	}
	return nil
}

// failLocked records a failed message for Lua (bounded: beyond max_failures
// the oldest is dropped, and counted, so memory stays bounded).
func (p *Producer) failLocked(m kgo.Message, err error) {
	kind := errorKind(err)
	p.st.failed++
	p.st.errors[kind]++
	if p.maxFailures == 0 {
		p.st.failuresDropped++
		return
	}
	if len(p.failures) >= p.maxFailures {
		p.failures = p.failures[1:]
		p.st.failuresDropped++
	}
	m.WriterData = nil
	p.failures = append(p.failures, failure{msg: m, err: err, kind: kind})
	set(&p.g.failures, int64(len(p.failures)))
}

// finishLocked moves n messages to "done" (buffered drops by fromBuffer)
// and wakes flushers.
func (p *Producer) finishLocked(n, fromBuffer int64) {
	p.done += n
	p.buffered -= fromBuffer
	raise(&p.g.done, p.done)
	close(p.changed)
	p.changed = make(chan struct{})
}

// completed is the async writer's Completion callback.
func (p *Producer) completed(msgs []kgo.Message, err error) {
	now := time.Now()
	p.mu.Lock()
	if err == nil {
		for i := range msgs {
			p.st.bytes += int64(len(msgs[i].Key) + len(msgs[i].Value))
		}
		p.st.delivered += int64(len(msgs))
		p.finishLocked(int64(len(msgs)), int64(len(msgs)))
		p.mu.Unlock()
		return
	}
	err = firstError(err)
	var failed int64
	var retry []kgo.Message
	for _, m := range msgs {
		md, _ := m.WriterData.(*meta)
		if retriable(err) && md != nil && now.Before(md.deadline) {
			retry = append(retry, m)
			continue
		}
		p.failLocked(m, err)
		failed++
	}
	if len(retry) > 0 {
		p.st.retries += int64(len(retry))
		p.st.errors[errorKind(err)] += int64(len(retry))
		p.queue = append(retry, p.queue...)
	}
	if failed > 0 {
		p.finishLocked(failed, failed)
	}
	p.mu.Unlock()
	if len(retry) > 0 {
		// give the cluster a moment before the writer tries again
		time.AfterFunc(p.backoffMin, func() {
			select {
			case p.wake <- struct{}{}:
			default:
			}
		})
	}
}

// pump hands queued messages to the async writer, topic by topic, so that
// a topic that cannot be written (no metadata yet) does not hold up others.
func (p *Producer) pump() {
	defer close(p.pumpDone)
	defer func() {
		if r := recover(); r != nil {
			core.Logf(core.LevelErr, "kafka producer: pump panic: %v", r)
		}
	}()
	backoff := p.backoffMin
	for {
		select {
		case <-p.wake:
		case <-p.stop:
			return
		}
		p.mu.Lock()
		batch := p.queue
		p.queue = nil
		p.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		byTopic := map[string][]kgo.Message{}
		var order []string
		for _, m := range batch {
			if _, seen := byTopic[m.Topic]; !seen {
				order = append(order, m.Topic)
			}
			byTopic[m.Topic] = append(byTopic[m.Topic], m)
		}
		var again []kgo.Message
		var lastErr error
		for _, t := range order {
			if rest, err := p.hand(byTopic[t]); err != nil {
				again = append(again, rest...)
				lastErr = err
			}
		}
		if len(again) == 0 {
			backoff = p.backoffMin
			continue
		}
		p.mu.Lock()
		p.st.retries += int64(len(again))
		p.st.errors[errorKind(lastErr)] += int64(len(again))
		p.queue = append(again, p.queue...)
		p.mu.Unlock()
		select {
		case <-time.After(backoff):
		case <-p.stop:
			return
		}
		backoff = min(backoff*2, p.backoffMax)
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// hand gives one topic's messages to the async writer. It returns the
// messages to try again later (with the error), after failing those past
// their deadline or that cannot succeed.
func (p *Producer) hand(msgs []kgo.Message) ([]kgo.Message, error) {
	for len(msgs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), p.requestTimeout)
		var err error
		if p.asyncClosed.Load() {
			// shutting down: write and account for them here
			err = firstError(p.final.WriteMessages(ctx, msgs...))
			cancel()
			var tooLarge kgo.MessageTooLargeError
			if !errors.As(err, &tooLarge) {
				p.completed(msgs, err)
				return nil, nil
			}
		} else {
			err = p.async.WriteMessages(ctx, msgs...)
			cancel()
		}
		if err == nil {
			return nil, nil
		}
		var tooLarge kgo.MessageTooLargeError
		if errors.As(err, &tooLarge) {
			// drop just that one, try the rest again
			i := indexOf(msgs, tooLarge.Message)
			p.failBuffered(msgs[i:i+1], err)
			msgs = append(msgs[:i:i], msgs[i+1:]...)
			continue
		}
		now := time.Now()
		var keep, dead []kgo.Message
		for _, m := range msgs {
			if md, _ := m.WriterData.(*meta); retriable(err) && md != nil && now.Before(md.deadline) {
				keep = append(keep, m)
			} else {
				dead = append(dead, m)
			}
		}
		p.failBuffered(dead, err)
		return keep, err
	}
	return nil, nil
}

func indexOf(msgs []kgo.Message, m kgo.Message) int {
	for i := range msgs {
		if msgs[i].Topic == m.Topic && &msgs[i].Value == &m.Value {
			return i
		}
	}
	for i := range msgs {
		if msgs[i].Topic == m.Topic && string(msgs[i].Value) == string(m.Value) && string(msgs[i].Key) == string(m.Key) {
			return i
		}
	}
	return 0
}

func (p *Producer) failBuffered(msgs []kgo.Message, err error) {
	if len(msgs) == 0 {
		return
	}
	p.mu.Lock()
	for _, m := range msgs {
		p.failLocked(m, err)
	}
	p.finishLocked(int64(len(msgs)), int64(len(msgs)))
	p.mu.Unlock()
}

// flush(timeout_ms [, target]) waits until every async message accepted so
// far (or, with target, the first target messages Lua handed over) is
// finished. Returns true, or an error naming how many are left.
func (p *Producer) flush(ctx context.Context, args []any) (any, error) {
	timeout := 10 * time.Second
	if len(args) > 0 {
		if v, ok := toInt(args[0]); ok && v >= 0 {
			timeout = time.Duration(v) * time.Millisecond
		}
	}
	p.mu.Lock()
	target := p.done + p.buffered
	if len(args) > 1 {
		if v, ok := toInt(args[1]); ok {
			target = v
		}
	}
	p.mu.Unlock()
	if p.waitDone(ctx, target, timeout) {
		return true, nil
	}
	p.mu.Lock()
	left := target - p.done
	p.mu.Unlock()
	return nil, fmt.Errorf("timeout: %d messages not yet delivered", left)
}

// waitDone waits until done >= target, or the timeout / ctx.
func (p *Producer) waitDone(ctx context.Context, target int64, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		p.mu.Lock()
		ok, ch := p.done >= target, p.changed
		p.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (p *Producer) takeFailures(n int) []any {
	p.mu.Lock()
	if n > len(p.failures) {
		n = len(p.failures)
	}
	taken := p.failures[:n]
	p.failures = append([]failure(nil), p.failures[n:]...)
	set(&p.g.failures, int64(len(p.failures)))
	p.mu.Unlock()
	out := make([]any, len(taken))
	for i, f := range taken {
		out[i] = map[string]any{
			"topic": f.msg.Topic, "partition": f.msg.Partition, "key": nilIfEmpty(f.msg.Key),
			"value": f.msg.Value, "headers": headersOut(f.msg.Headers),
			"err": f.err.Error(), "kind": f.kind, "retryable": retriable(f.err),
		}
	}
	return out
}

func nilIfEmpty(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func (p *Producer) stats() map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := make(map[string]any, len(p.st.errors))
	for k, v := range p.st.errors {
		errs[k] = v
	}
	return map[string]any{
		"sent": p.st.delivered + p.st.syncSent, "async_sent": p.st.delivered, "sync_sent": p.st.syncSent,
		"failed": p.st.failed + p.st.syncFailed, "async_failed": p.st.failed, "sync_failed": p.st.syncFailed,
		"refused": p.st.refused, "retries": p.st.retries, "buffered": p.buffered,
		"accepted": p.accepted, "done": p.done, "bytes": p.st.bytes, "errors": errs,
		"failures_pending": len(p.failures), "failures_dropped": p.st.failuresDropped,
		"max_buffering": p.maxBuffer,
	}
}

// Close stops taking messages and delivers what was accepted, within ctx's
// deadline: the pump hands the queue to the async writer, closing that
// writer sends its pending batches at once (whatever their batch timeout),
// and messages that failed on the way are retried through a sync writer
// until delivered, failed for good, or the deadline. Messages still
// not confirmed by the deadline are logged, by count. The sync path's
// leader connections are closed (one still in use when it comes back).
func (p *Producer) Close(ctx context.Context) error {
	var err error
	p.once.Do(func() {
		p.mu.Lock()
		p.closing = true
		target := p.done + p.buffered
		p.mu.Unlock()
		p.kick()
		p.waitQueued(ctx)
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			p.async.Close()
		}()
		select {
		case <-closed:
		case <-ctx.Done():
		}
		p.asyncClosed.Store(true)
		p.kick()
		p.waitDone(ctx, target, time.Hour)
		close(p.stop)
		<-p.pumpDone
		p.direct.close()
		go func() {
			p.final.Close()
			p.transport.CloseIdleConnections()
		}()
		p.mu.Lock()
		left := p.buffered
		pending := len(p.failures)
		p.mu.Unlock()
		if left > 0 {
			// The writer's close goes on in the background: messages on
			// the wire may still be acknowledged, so this is not a loss.
			err = fmt.Errorf("kafka producer: %d accepted messages were not confirmed by the shutdown deadline"+
				" (sent ones may still be acknowledged after it)", left)
			core.Log(core.LevelErr, err.Error())
		}
		if pending > 0 {
			core.Logf(core.LevelErr, "kafka producer: %d failed messages were never taken by an error handler", pending)
		}
	})
	return err
}

func (p *Producer) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// waitQueued waits until the pump has handed the queue to the writer.
func (p *Producer) waitQueued(ctx context.Context) {
	for {
		p.mu.Lock()
		empty := len(p.queue) == 0
		p.mu.Unlock()
		if empty {
			return
		}
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}
