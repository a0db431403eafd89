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

// subscription is a pub/sub connection behind a Lua handle.
//
// A reader goroutine reads every reply off the connection into a queue;
// calls take from the queue, so a call that times out or is canceled never
// loses a message: an item taken by a call whose caller already gave up
// goes back to the front of the queue.
//
// Operations:
//
//	"recv"                  the next published message as a table
//	                        {channel=, payload=, pattern=} (native surface;
//	                        confirmations and pongs are skipped)
//	"read"                  the next reply of any kind, as the array
//	                        lua-resty-redis's read_reply returns
//	"subscribe" chans..     send the command, then return the next reply
//	"psubscribe", "unsubscribe", "punsubscribe", "ping": the same
type subscription struct {
	ps     *goredis.PubSub
	items  chan item
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex // one taker at a time; guards pending
	pending []item     // taken by a call whose caller had gone
}

// item is one reply read off the connection, or the error that ended a read.
type item struct {
	msg any
	err error
}

// queueSize bounds what the reader reads ahead; past it, the socket
// buffers (and Redis's output buffer limits apply).
const queueSize = 1024

// readErrorPause spaces reads after a failure (the server is away; go-redis
// reconnects and subscribes again on the next read).
const readErrorPause = 100 * time.Millisecond

func (r *Runtime) subscribe(ctx context.Context, args []any) (any, error) {
	if len(args) < 2 {
		return nil, errors.New("redis: subscribe: the kind and at least one channel are expected")
	}
	kind, _ := args[0].(string)
	names, err := stringArgs(args[1:])
	if err != nil {
		return nil, fmt.Errorf("redis: %s: %w", kind, err)
	}
	var ps *goredis.PubSub
	switch kind {
	case "subscribe":
		ps = r.client.Subscribe(ctx)
		err = ps.Subscribe(ctx, names...)
	case "psubscribe":
		ps = r.client.PSubscribe(ctx)
		err = ps.PSubscribe(ctx, names...)
	default:
		return nil, fmt.Errorf("redis: subscribe: unknown kind %q", kind)
	}
	if err != nil {
		ps.Close()
		return nil, transportError(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	s := &subscription{ps: ps, items: make(chan item, queueSize), cancel: cancel, done: make(chan struct{})}
	go s.read(rctx)
	return s, nil
}

// read is the reader goroutine.
func (s *subscription) read(ctx context.Context) {
	defer close(s.done)
	defer func() {
		if r := recover(); r != nil {
			core.Logf(core.LevelErr, "redis: pub/sub reader panic: %v", r)
			select {
			case s.items <- item{err: fmt.Errorf("redis: pub/sub reader failed: %v", r)}:
			default:
			}
		}
	}()
	for {
		msg, err := s.ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		select {
		case s.items <- item{msg: msg, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			select {
			case <-time.After(readErrorPause):
			case <-ctx.Done():
				return
			}
		}
	}
}

func stringArgs(args []any) ([]string, error) {
	out := make([]string, len(args))
	for i, a := range args {
		v, err := argValue(a)
		if err != nil {
			return nil, fmt.Errorf("argument #%d: %w", i+1, err)
		}
		switch s := v.(type) {
		case string:
			out[i] = s
		case int64:
			out[i] = fmt.Sprint(s)
		case []byte:
			out[i] = string(s)
		}
	}
	return out, nil
}

// take returns the next item, waiting until ctx ends. Called with s.mu held.
func (s *subscription) take(ctx context.Context) (item, error) {
	if n := len(s.pending); n > 0 {
		it := s.pending[0]
		s.pending = s.pending[1:]
		return it, nil
	}
	select {
	case it := <-s.items:
		return it, nil
	case <-s.done:
		select {
		case it := <-s.items:
			return it, nil
		default:
		}
		return item{}, errors.New("closed")
	case <-ctx.Done():
		return item{}, ctx.Err()
	}
}

// next takes the next item that keep accepts (every item when keep is
// nil). An item taken when the caller had already gone back to Lua is
// put back for the next call.
func (s *subscription) next(ctx context.Context, keep func(any) bool) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		it, err := s.take(ctx)
		if err != nil {
			return nil, transportError(err)
		}
		if it.err != nil {
			return nil, transportError(it.err)
		}
		if keep != nil && !keep(it.msg) {
			continue
		}
		if ctx.Err() != nil {
			s.pending = append([]item{it}, s.pending...)
			return nil, transportError(ctx.Err())
		}
		return it.msg, nil
	}
}

func isMessage(msg any) bool {
	_, ok := msg.(*goredis.Message)
	return ok
}

func (s *subscription) Call(ctx context.Context, op string, args []any) (any, error) {
	switch op {
	case "recv":
		msg, err := s.next(ctx, isMessage)
		if err != nil {
			return nil, err
		}
		m := msg.(*goredis.Message)
		out := map[string]any{"channel": m.Channel, "payload": m.Payload}
		if m.Pattern != "" {
			out["pattern"] = m.Pattern
		}
		return out, nil
	case "read":
		msg, err := s.next(ctx, nil)
		if err != nil {
			return nil, err
		}
		return replyArray(msg), nil
	case "subscribe", "psubscribe", "unsubscribe", "punsubscribe", "ping":
		names, err := stringArgs(args)
		if err != nil {
			return nil, fmt.Errorf("redis: %s: %w", op, err)
		}
		switch op {
		case "subscribe":
			err = s.ps.Subscribe(ctx, names...)
		case "psubscribe":
			err = s.ps.PSubscribe(ctx, names...)
		case "unsubscribe":
			err = s.ps.Unsubscribe(ctx, names...)
		case "punsubscribe":
			err = s.ps.PUnsubscribe(ctx, names...)
		case "ping":
			err = s.ps.Ping(ctx, strings.Join(names, " "))
		}
		if err != nil {
			return nil, transportError(err)
		}
		msg, err := s.next(ctx, nil)
		if err != nil {
			return nil, err
		}
		return replyArray(msg), nil
	}
	return nil, core.UnknownOp("redis subscription", op)
}

// replyArray renders a pub/sub reply as the array Redis sent.
func replyArray(msg any) any {
	switch m := msg.(type) {
	case *goredis.Subscription:
		var ch any = m.Channel
		if m.Channel == "" { // "unsubscribe" with nothing subscribed
			ch = core.Null{}
		}
		return []any{m.Kind, ch, int64(m.Count)}
	case *goredis.Message:
		if m.Pattern != "" {
			return []any{"pmessage", m.Pattern, m.Channel, m.Payload}
		}
		return []any{"message", m.Channel, m.Payload}
	case *goredis.Pong:
		return []any{"pong", m.Payload}
	}
	return fmt.Sprint(msg)
}

// Close closes the pub/sub connection and stops the reader; a call
// waiting for a message ends with "closed".
func (s *subscription) Close(context.Context) error {
	var err error
	s.once.Do(func() {
		s.cancel()
		err = s.ps.Close()
		<-s.done
	})
	if errors.Is(err, goredis.ErrClosed) {
		return nil
	}
	return err
}
