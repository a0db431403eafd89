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
// Operations:
//
//	"recv"                  the next published message as a table
//	                        {channel=, payload=, pattern=} (native surface;
//	                        confirmations and pongs are skipped); the wait
//	                        is bounded by the call's timeout
//	"read"                  the next reply of any kind, as the array
//	                        lua-resty-redis's read_reply returns
//	"subscribe" chans..     send the command, then return the next reply
//	"psubscribe", "unsubscribe", "punsubscribe": the same
//	"ping"                  send PING on the subscribed connection
type subscription struct {
	ps *goredis.PubSub
	mu sync.Mutex // one reader at a time
}

// defaultRecvWait bounds a read whose context has no deadline.
const defaultRecvWait = time.Minute

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
	return &subscription{ps: ps}, nil
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

// receive reads one reply within ctx's deadline. A read that times out
// leaves the subscription intact (go-redis keeps the connection when the
// timeout was asked for).
func (s *subscription) receive(ctx context.Context) (any, error) {
	wait := defaultRecvWait
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
		if wait <= 0 {
			return nil, core.ErrTimeout
		}
	}
	msg, err := s.ps.ReceiveTimeout(ctx, wait)
	if err != nil {
		return nil, transportError(err)
	}
	return msg, nil
}

func (s *subscription) Call(ctx context.Context, op string, args []any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch op {
	case "recv":
		for {
			msg, err := s.receive(ctx)
			if err != nil {
				return nil, err
			}
			if m, ok := msg.(*goredis.Message); ok {
				out := map[string]any{"channel": m.Channel, "payload": m.Payload}
				if m.Pattern != "" {
					out["pattern"] = m.Pattern
				}
				return out, nil
			}
		}
	case "read":
		msg, err := s.receive(ctx)
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
		msg, err := s.receive(ctx)
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

// Close closes the pub/sub connection; a read in progress fails at once.
func (s *subscription) Close(context.Context) error {
	err := s.ps.Close()
	if errors.Is(err, goredis.ErrClosed) {
		return nil
	}
	return err
}
