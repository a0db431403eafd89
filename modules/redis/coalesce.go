package redis

import (
	"context"
	"runtime"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// coalescer sends the single commands of concurrent calls together, as
// one pipeline: one write and one read burst for the batch instead of a
// round trip each, for this worker's Go side and for redis-server alike.
//
// A call that finds nothing on the wire and nothing queued is sent at
// once by its own goroutine, as without coalescing: sequential calls pay
// nothing. Calls that find a command on the wire queue theirs. The core
// starts the calls of one event-loop round together (the pump takes them
// off the ring in a batch), so a batch forms without waiting: the first
// queued call wakes the sender, which yields once so the other calls of
// the round queue theirs too, then sends them all. No timer is involved.
//
// Only commands that neither block the connection nor depend on its state
// are coalesced (pipelinable); the rest go straight to the client.
type coalescer struct {
	client goredis.UniversalClient
	wake   chan struct{} // buffered 1: "the queue is not empty"
	done   chan struct{} // closed by close()
	ended  chan struct{} // closed when the sender has returned

	mu      sync.Mutex
	queue   []*queued
	onWire  int // commands and batches sent and not yet answered
	stopped bool
	spare   []*queued // the sender's: the previous batch's array, for reuse
}

type queued struct {
	ctx  context.Context // the caller's, for its deadline
	cmd  *goredis.Cmd
	sent chan struct{} // closed once cmd holds its reply or error
}

func newCoalescer(client goredis.UniversalClient) *coalescer {
	c := &coalescer{
		client: client,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		ended:  make(chan struct{}),
	}
	go c.sender()
	return c
}

// Do queues one command and waits for its reply, or for ctx.
func (c *coalescer) Do(ctx context.Context, args ...any) *goredis.Cmd {
	name, _ := args[0].(string)
	if !pipelinable(name) {
		return c.client.Do(ctx, args...)
	}
	c.mu.Lock()
	if c.stopped || (c.onWire == 0 && len(c.queue) == 0) {
		// Nothing to share a round trip with: send it now, without the
		// hand-off to the sender (a closed client answers "closed").
		c.onWire++
		c.mu.Unlock()
		cmd := c.client.Do(ctx, args...)
		c.mu.Lock()
		c.onWire--
		c.mu.Unlock()
		return cmd
	}
	q := &queued{ctx: ctx, cmd: goredis.NewCmd(ctx, args...), sent: make(chan struct{})}
	c.queue = append(c.queue, q)
	first := len(c.queue) == 1
	c.mu.Unlock()
	if first {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	select {
	case <-q.sent:
		return q.cmd
	case <-ctx.Done():
		// the batch goes on; its reply for this command is dropped
		cmd := goredis.NewCmd(ctx, args...)
		cmd.SetErr(ctx.Err())
		return cmd
	}
}

func (c *coalescer) sender() {
	defer close(c.ended)
	for {
		select {
		case <-c.wake:
		case <-c.done:
			c.drain()
			return
		}
		// Calls started with this one are runnable now: let them queue.
		runtime.Gosched()
		for c.send() {
		}
	}
}

// send pipelines what is queued; false when the queue was empty.
func (c *coalescer) send() bool {
	c.mu.Lock()
	batch := c.queue
	c.queue = c.spare[:0] // spare is the sender's alone
	if len(batch) > 0 {
		c.onWire++
	}
	c.mu.Unlock()
	if len(batch) == 0 {
		c.spare = batch
		return false
	}
	defer func() {
		c.mu.Lock()
		c.onWire--
		c.mu.Unlock()
	}()
	ctx := batchContext(batch)
	if len(batch) == 1 {
		// a pipeline of one costs more than the command itself
		_ = c.client.Process(ctx, batch[0].cmd)
	} else {
		p := c.client.Pipeline()
		for _, q := range batch {
			_ = p.Process(ctx, q.cmd)
		}
		_, _ = p.Exec(ctx) // each command keeps its own reply or error
	}
	for _, q := range batch {
		close(q.sent)
	}
	clear(batch)
	c.spare = batch[:0]
	return true
}

// batchContext carries the latest deadline of the batch's calls, so no
// call's reply is cut short by another's; each caller still returns at
// its own deadline. A call without a deadline leaves the batch to the
// client's read and write timeouts. Nothing cancels it: a caller that
// gives up does not abort the others' commands.
func batchContext(batch []*queued) context.Context {
	var latest time.Time
	for _, q := range batch {
		d, ok := q.ctx.Deadline()
		if !ok {
			return context.Background()
		}
		if d.After(latest) {
			latest = d
		}
	}
	// go-redis takes its socket deadlines from Deadline() and never waits
	// on Done(): no timer is needed
	return core.WithDeadlineOnly(context.Background(), latest)
}

// drain answers what is still queued when the runtime closes.
func (c *coalescer) drain() {
	c.mu.Lock()
	c.stopped = true
	batch := c.queue
	c.queue = nil
	c.mu.Unlock()
	for _, q := range batch {
		q.cmd.SetErr(goredis.ErrClosed)
		close(q.sent)
	}
}

// close stops the sender after the batch on the wire; queued calls get
// "closed".
func (c *coalescer) close() {
	close(c.done)
	<-c.ended
}

// pipelinable lists the commands a batch may carry: they return at once
// (no blocking pops, no WAIT) and change no connection state (no SELECT,
// MULTI, WATCH, SUBSCRIBE, CLIENT ...). Names arrive as Lua wrote them.
func pipelinable(name string) bool {
	if len(name) > 16 {
		return false
	}
	var lower [16]byte
	for i := 0; i < len(name); i++ {
		b := name[i]
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		lower[i] = b
	}
	_, ok := pipelinableCommands[string(lower[:len(name)])]
	return ok
}

var pipelinableCommands = map[string]struct{}{}

func init() {
	for _, name := range []string{
		"get", "set", "setnx", "setex", "psetex", "getset", "getdel", "getex", "mget", "mset",
		"msetnx", "incr", "incrby", "incrbyfloat", "decr", "decrby", "append", "strlen",
		"getrange", "setrange", "del", "unlink", "exists", "expire", "pexpire", "expireat",
		"pexpireat", "ttl", "pttl", "persist", "type", "hget", "hset", "hsetnx", "hmget",
		"hmset", "hgetall", "hdel", "hexists", "hincrby", "hincrbyfloat", "hkeys", "hvals",
		"hlen", "hstrlen", "lpush", "rpush", "lpushx", "rpushx", "lpop", "rpop", "llen",
		"lrange", "lindex", "lset", "lrem", "ltrim", "sadd", "srem", "smembers", "sismember",
		"smismember", "scard", "spop", "srandmember", "zadd", "zrem", "zscore", "zmscore",
		"zincrby", "zcard", "zcount", "zrange", "zrangebyscore", "zrevrange",
		"zrevrangebyscore", "zrank", "zrevrank", "publish", "pfadd", "pfcount", "xadd", "xlen",
		"geoadd", "geopos", "geodist", "bitcount", "getbit", "setbit", "ping", "echo",
	} {
		pipelinableCommands[name] = struct{}{}
	}
}
