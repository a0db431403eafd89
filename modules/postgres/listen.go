package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// Listener is a LISTEN session on a dedicated connection (not from the
// pool), returned to Lua as a handle. When the connection is lost, the next
// recv reports it once as an error; later recvs reconnect and LISTEN again
// by themselves (notifications sent in between are lost: PostgreSQL does
// not keep them).
type Listener struct {
	r        *Runtime
	mu       sync.Mutex
	conn     *pgx.Conn
	channels []string
	closed   bool
	backoff  time.Duration
	nextTry  time.Time

	// stopRecv cancels a recv in progress, so that Close does not wait for
	// its timeout (Close cannot take mu while recv holds it).
	recvMu   sync.Mutex
	stopRecv context.CancelFunc
}

func (r *Runtime) listen(ctx context.Context, args []any) (any, error) {
	l := &Listener{r: r}
	for i, a := range args {
		ch, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf("postgres: listen: channel #%d must be a string, got %T", i+1, a)
		}
		if !slices.Contains(l.channels, ch) {
			l.channels = append(l.channels, ch)
		}
	}
	if err := l.connect(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// connect opens the connection and listens on every channel. l.mu held
// (or l not yet shared).
func (l *Listener) connect(ctx context.Context) error {
	cfg := l.r.set.pool.ConnConfig.Copy()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return wrapErr(ctx, "listen: connecting", err)
	}
	for _, ch := range l.channels {
		if _, err := c.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			_ = c.Close(context.Background())
			return wrapErr(ctx, "listen "+ch, err)
		}
	}
	l.conn = c
	l.backoff = 0
	return nil
}

func (l *Listener) drop() {
	if l.conn != nil {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = l.conn.Close(cctx)
		cancel()
		l.conn = nil
	}
}

// reconnect tries to connect again, pacing attempts with a backoff; it
// waits within ctx and returns ctx's error when that runs out first.
func (l *Listener) reconnect(ctx context.Context) error {
	for {
		if wait := time.Until(l.nextTry); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		err := l.connect(ctx)
		if err == nil {
			core.Logf(core.LevelNotice, "postgres: listen: reconnected, listening on %v again", l.channels)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.backoff = min(max(l.backoff*2, 100*time.Millisecond), 2*time.Second)
		l.nextTry = time.Now().Add(l.backoff)
	}
}

// Call serves recv, listen, unlisten, channels.
func (l *Listener) Call(ctx context.Context, op string, args []any) (any, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("postgres: listener is closed")
	}
	switch op {
	case "recv":
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		l.recvMu.Lock()
		l.stopRecv = cancel
		l.recvMu.Unlock()
		if l.conn == nil {
			if err := l.reconnect(ctx); err != nil {
				return nil, err
			}
		}
		n, err := l.conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil && !l.conn.IsClosed() {
				return nil, ctx.Err()
			}
			l.drop()
			return nil, fmt.Errorf("postgres: listen: connection lost (%v); reconnecting, notifications sent until then are lost", err)
		}
		return map[string]any{"channel": n.Channel, "payload": n.Payload, "pid": int64(n.PID)}, nil
	case "listen", "unlisten":
		for i, a := range args {
			ch, ok := a.(string)
			if !ok {
				return nil, fmt.Errorf("postgres: %s: channel #%d must be a string, got %T", op, i+1, a)
			}
			if l.conn != nil {
				cmd := "LISTEN "
				if op == "unlisten" {
					cmd = "UNLISTEN "
				}
				if _, err := l.conn.Exec(ctx, cmd+pgx.Identifier{ch}.Sanitize()); err != nil {
					return nil, wrapErr(ctx, op+" "+ch, err)
				}
			}
			if op == "listen" && !slices.Contains(l.channels, ch) {
				l.channels = append(l.channels, ch)
			}
			if op == "unlisten" {
				l.channels = slices.DeleteFunc(l.channels, func(s string) bool { return s == ch })
			}
		}
		return true, nil
	case "channels":
		return slices.Clone(l.channels), nil
	}
	return nil, core.UnknownOp("postgres listener", op)
}

// Close ends the session.
func (l *Listener) Close(ctx context.Context) error {
	l.recvMu.Lock()
	if l.stopRecv != nil {
		l.stopRecv()
	}
	l.recvMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.drop()
	return nil
}
