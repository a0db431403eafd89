// Package redis is the runtime behind resty.ffi.redis: one go-redis/v9
// client (single node, cluster, or sentinel-managed failover) per distinct
// configuration per nginx worker, shared by every request of that worker.
//
// Operations (op is what Lua passes to rt:call):
//
//	"<command>" args...     any Redis command, e.g. op "get", args {"key"};
//	                        the reply shaped as lua-resty-redis shapes it,
//	                        an error reply as an error with detail true
//	".ping"                 check that a connection can be had (connect())
//	".pipe"  n, cmd, a.., n, cmd, a..  one pipeline; an array of replies,
//	                        error replies as {false, msg}
//	".tx"    (same)         MULTI/EXEC around the commands (TxPipeline);
//	                        the EXEC replies
//	".conn"                 a dedicated connection (a handle) for commands
//	                        that bind state to a connection: MULTI, WATCH
//	".sub"   kind, name..   a pub/sub connection (a handle); kind is
//	                        "subscribe" or "psubscribe"
//
// Names starting with "." are never Redis commands, so the command path
// needs no argument for the command name.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

func init() { core.Register("redis", New) }

// closeTimeout bounds the clean-up commands sent when a handle closes.
const closeTimeout = time.Second

// Runtime is one go-redis client.
type Runtime struct {
	cfg    *config
	client goredis.UniversalClient
	// cmd runs single commands: the client itself, or its autopipeliner,
	// which batches the commands of concurrent requests into pipelines
	// (blocking and connection-bound commands go to a pooled connection).
	cmd    doer
	apOnce sync.Once
	ap     *goredis.AutoPipeliner
	co     *coalescer
}

// New parses the options and builds the client; go-redis connects on the
// first command, so this never blocks on the network.
func New(opts core.Options) (core.Object, error) {
	cfg, err := parseOptions(opts)
	if err != nil {
		return nil, err
	}
	r := &Runtime{cfg: cfg, client: cfg.newClient()}
	r.cmd = r.client
	return r, nil
}

// commands returns what runs single commands, making the coalescer or the
// autopipeliner on first use (they start goroutines, which a factory
// should not).
func (r *Runtime) commands() doer {
	if !r.cfg.autoPipeline {
		if !r.cfg.coalesce {
			return r.client
		}
		r.apOnce.Do(func() { r.co = newCoalescer(r.client) })
		if r.co == nil {
			return r.client // closed
		}
		return r.co
	}
	r.apOnce.Do(func() {
		ap, err := r.client.AutoPipeline()
		if err != nil {
			core.Logf(core.LevelWarn, "redis: auto-pipelining unavailable, sending commands one by one: %v", err)
			return
		}
		r.ap = ap
	})
	if r.ap == nil {
		return r.client
	}
	return r.ap
}

// doer is what runs one command: the pooled client or a dedicated Conn.
type doer interface {
	Do(ctx context.Context, args ...any) *goredis.Cmd
}

// do runs one command and shapes its reply.
func do(ctx context.Context, c doer, op string, args []any) (any, error) {
	cargs, err := commandArgs(op, args)
	if err != nil {
		return nil, err
	}
	v, err := c.Do(ctx, cargs...).Result()
	if err != nil {
		if err == goredis.Nil {
			return core.Null{}, nil
		}
		return nil, transportError(err)
	}
	return convertReply(v), nil
}

// Call serves the operations listed in the package comment.
func (r *Runtime) Call(ctx context.Context, op string, args []any) (any, error) {
	if len(op) == 0 || op[0] != '.' {
		return do(ctx, r.commands(), op, args)
	}
	switch op {
	case ".ping":
		if err := r.client.Ping(ctx).Err(); err != nil {
			return nil, transportError(err)
		}
		return true, nil
	case ".pipe":
		return runPipeline(ctx, r.client.Pipeline(), args)
	case ".tx":
		return runPipeline(ctx, r.client.TxPipeline(), args)
	case ".conn":
		c, ok := r.client.(*goredis.Client)
		if !ok {
			return nil, errors.New("redis: MULTI and WATCH as separate calls need a dedicated connection," +
				" which a cluster client cannot give; use transaction() instead")
		}
		return &conn{conn: c.Conn()}, nil
	case ".sub":
		return r.subscribe(ctx, args)
	case ".stats":
		s := r.client.PoolStats()
		return map[string]any{
			"hits": s.Hits, "misses": s.Misses, "timeouts": s.Timeouts,
			"total_conns": s.TotalConns, "idle_conns": s.IdleConns, "stale_conns": s.StaleConns,
		}, nil
	}
	return nil, core.UnknownOp("redis", op)
}

// Close closes the client's pools.
func (r *Runtime) Close(context.Context) error {
	r.apOnce.Do(func() {}) // no autopipeliner from now on
	if r.ap != nil {
		r.ap.Close()
	}
	if r.co != nil {
		r.co.close()
	}
	return r.client.Close()
}

// runPipeline queues the flat command list (count, name, args..., count,
// name, args...) on p and executes it in one round trip.
func runPipeline(ctx context.Context, p goredis.Pipeliner, args []any) (any, error) {
	if len(args) == 1 {
		// the list as one table argument (no limit on Lua's unpack)
		switch l := args[0].(type) {
		case []any:
			args = l
		case map[string]any: // an empty table
			args = nil
		}
	}
	cmds, err := queue(ctx, p, args)
	if err != nil {
		return nil, err
	}
	if len(cmds) == 0 {
		return []any{}, nil
	}
	if _, err = p.Exec(ctx); err != nil && err != goredis.Nil {
		var re goredis.Error
		if !errors.As(err, &re) {
			return nil, transportError(err)
		}
		// EXECABORT: the transaction was discarded as a whole
		if len(re.Error()) >= 9 && re.Error()[:9] == "EXECABORT" {
			return nil, replyError{msg: re.Error()}
		}
	}
	out := make([]any, len(cmds))
	for i, c := range cmds {
		if out[i], err = cmdResult(c); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func queue(ctx context.Context, p goredis.Pipeliner, args []any) ([]goredis.Cmder, error) {
	cmds := make([]goredis.Cmder, 0, len(args)/2)
	for i := 0; i < len(args); {
		n, ok := args[i].(int64)
		if !ok || n < 1 || i+1+int(n) > len(args) {
			return nil, fmt.Errorf("redis: pipeline: malformed command list at item %d", i+1)
		}
		name, ok := args[i+1].(string)
		if !ok {
			return nil, fmt.Errorf("redis: pipeline: command #%d: the name must be a string", len(cmds)+1)
		}
		cargs, err := commandArgs(name, args[i+2:i+1+int(n)])
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, p.Do(ctx, cargs...))
		i += 1 + int(n)
	}
	return cmds, nil
}

// conn is a dedicated connection taken from the pool, for commands whose
// state lives on the connection (MULTI ... EXEC, WATCH).
type conn struct {
	conn     *goredis.Conn
	inMulti  bool
	watching bool
}

func (c *conn) Call(ctx context.Context, op string, args []any) (any, error) {
	switch op {
	case ".pipe":
		return runPipeline(ctx, c.conn.Pipeline(), args)
	case ".tx":
		return runPipeline(ctx, c.conn.TxPipeline(), args)
	}
	res, err := do(ctx, c.conn, op, args)
	if err == nil {
		c.track(op)
	}
	return res, err
}

// track follows the connection's transaction state, so Close can leave
// it clean for the next user of the pool.
func (c *conn) track(op string) {
	switch strings.ToLower(op) {
	case "multi":
		c.inMulti = true
	case "watch":
		c.watching = true
	case "exec", "discard":
		c.inMulti, c.watching = false, false
	case "unwatch":
		c.watching = false
	}
}

// Close returns the connection to the pool after ending what it left open.
func (c *conn) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, closeTimeout)
	defer cancel()
	if c.inMulti {
		c.conn.Do(ctx, "discard")
	} else if c.watching {
		c.conn.Do(ctx, "unwatch")
	}
	return c.conn.Close()
}
