package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// Tx is a transaction on one pooled connection, returned to Lua as a
// handle. Close (explicit, GC, worker exit) rolls back if it is still open
// and gives the connection back; so does a call that times out, and so does
// the idle timer (tx_idle_timeout) for a transaction nobody uses any more.
type Tx struct {
	r    *Runtime
	mu   sync.Mutex
	conn *pgxpool.Conn
	tx   pgx.Tx
	done string // why it is finished ("committed", "rolled back", ...), "" while open
	idle *time.Timer
}

var errTxDone = errors.New("postgres: transaction is finished")

func (r *Runtime) begin(ctx context.Context, args []any) (any, error) {
	var opts pgx.TxOptions
	if len(args) > 0 && args[0] != nil {
		m, ok := args[0].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("postgres: begin: options must be a table, got %T", args[0])
		}
		for k, v := range m {
			switch k {
			case "isolation":
				s, _ := v.(string)
				switch strings.ToLower(strings.ReplaceAll(s, "_", " ")) {
				case "serializable":
					opts.IsoLevel = pgx.Serializable
				case "repeatable read":
					opts.IsoLevel = pgx.RepeatableRead
				case "read committed":
					opts.IsoLevel = pgx.ReadCommitted
				case "read uncommitted":
					opts.IsoLevel = pgx.ReadUncommitted
				default:
					return nil, fmt.Errorf("postgres: begin: unknown isolation level %q", s)
				}
			case "read_only":
				if b, _ := v.(bool); b {
					opts.AccessMode = pgx.ReadOnly
				} else {
					opts.AccessMode = pgx.ReadWrite
				}
			case "deferrable":
				if b, _ := v.(bool); b {
					opts.DeferrableMode = pgx.Deferrable
				}
			default:
				return nil, fmt.Errorf("postgres: begin: unknown option %q", k)
			}
		}
	}
	c, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil, wrapErr(ctx, "acquiring a connection", err)
	}
	tx, err := c.BeginTx(ctx, opts)
	if err != nil {
		c.Release()
		return nil, wrapErr(ctx, "begin", err)
	}
	t := &Tx{r: r, conn: c, tx: tx}
	if r.set.txIdle > 0 {
		t.idle = time.AfterFunc(r.set.txIdle, t.expire)
	}
	return t, nil
}

// expire rolls back a transaction left unused for tx_idle_timeout.
func (t *Tx) expire() {
	defer func() { _ = recover() }()
	if !t.mu.TryLock() {
		// a call is running: it re-arms the timer when it ends
		return
	}
	defer t.mu.Unlock()
	if t.done == "" {
		core.Logf(core.LevelWarn, "postgres: rolling back a transaction unused for %v", t.r.set.txIdle)
		t.finish(context.Background(), "rolled back (idle for too long)", false)
	}
}

// finish ends the transaction (commit or rollback) and releases the
// connection. Call with t.mu held.
func (t *Tx) finish(ctx context.Context, why string, commit bool) error {
	if t.idle != nil {
		t.idle.Stop()
	}
	var err error
	if commit {
		err = t.tx.Commit(ctx)
	} else {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = t.tx.Rollback(rctx)
		cancel()
		if err != nil {
			// the connection state is unknown: do not reuse it
			_ = t.conn.Conn().Close(context.Background())
		}
	}
	t.done = why
	t.conn.Release()
	if err != nil && errors.Is(err, pgx.ErrTxCommitRollback) {
		return errors.New("postgres: commit: the transaction had failed and was rolled back")
	}
	return err
}

// Call serves tx:query/exec/execute/batch/copy_from/commit/rollback.
func (t *Tx) Call(ctx context.Context, op string, args []any) (res any, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done != "" {
		return nil, fmt.Errorf("%w (%s)", errTxDone, t.done)
	}
	if t.idle != nil {
		t.idle.Stop()
	}
	defer func() {
		if t.done != "" {
			return
		}
		if ctx.Err() != nil {
			// timed out mid-call: nothing sane can follow
			t.finish(ctx, "rolled back (timeout)", false)
			return
		}
		if t.idle != nil {
			t.idle.Reset(t.r.set.txIdle)
		}
	}()
	c := t.conn.Conn()
	if connOps[op] {
		res, err := t.r.onConn(ctx, c, op, args)
		return res, wrapErr(ctx, op, err)
	}
	switch op {
	case "commit":
		if err := t.finish(ctx, "committed", true); err != nil {
			return nil, wrapErr(ctx, "commit", err)
		}
		return true, nil
	case "rollback":
		if err := t.finish(ctx, "rolled back", false); err != nil {
			return nil, wrapErr(ctx, "rollback", err)
		}
		return true, nil
	case "status":
		return string(c.PgConn().TxStatus()), nil
	}
	return nil, core.UnknownOp("postgres transaction", op)
}

// Close rolls back an open transaction and releases its connection.
func (t *Tx) Close(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done == "" {
		return t.finish(ctx, "rolled back (closed)", false)
	}
	return nil
}
