// Package echo is a diagnostic runtime for tests and benchmarks: it echoes
// values, sleeps, fails, panics, makes payloads and streams, so the core's
// call path can be exercised without any backend.
package echo

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

func init() { core.Register("echo", New) }

// Echo is one echo runtime. Its counters let tests observe the Go side.
type Echo struct {
	sleepsCanceled atomic.Int64
	streamsOpen    atomic.Int64
	streamsClosed  atomic.Int64
	streamsCancel  atomic.Int64
	closed         atomic.Bool

	mu      sync.Mutex
	records map[string]any
}

// New accepts no options other than an optional "name" (so tests can open
// separate instances).
func New(opts core.Options) (core.Object, error) {
	for k := range opts {
		if k != "name" {
			return nil, fmt.Errorf("echo: unknown option %q", k)
		}
	}
	return &Echo{records: map[string]any{}}, nil
}

func argInt(args []any, i int, what string) (int64, error) {
	if i >= len(args) {
		return 0, fmt.Errorf("echo: %s: argument #%d missing", what, i+1)
	}
	n, ok := args[i].(int64)
	if !ok {
		return 0, fmt.Errorf("echo: %s: argument #%d must be an integer, got %T", what, i+1, args[i])
	}
	return n, nil
}

// Call serves the echo operations.
func (e *Echo) Call(ctx context.Context, op string, args []any) (any, error) {
	switch op {
	case "echo":
		if len(args) == 0 {
			return nil, nil
		}
		return args[0], nil
	case "echo_all":
		return args, nil
	case "sleep":
		ms, err := argInt(args, 0, op)
		if err != nil {
			return nil, err
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return "slept", nil
		case <-ctx.Done():
			e.sleepsCanceled.Add(1)
			return nil, ctx.Err()
		}
	case "fail":
		msg := "failed"
		if len(args) > 0 {
			msg, _ = core.ToString(args[0])
		}
		return nil, errors.New(msg)
	case "fail_detail":
		return nil, detailError{msg: "failed with detail", detail: map[string]any{"code": "E42", "args": args}}
	case "payload":
		n, err := argInt(args, 0, op)
		if err != nil {
			return nil, err
		}
		if n < 0 || n > 256<<20 {
			return nil, fmt.Errorf("echo: payload: size %d out of range", n)
		}
		return strings.Repeat("x", int(n)), nil
	case "panic":
		msg := "echo panic"
		if len(args) > 0 {
			msg, _ = core.ToString(args[0])
		}
		panic(msg)
	case "log":
		level, err := argInt(args, 0, op)
		if err != nil {
			return nil, err
		}
		msg, _ := core.ToString(args[1%max(len(args), 1)])
		core.Log(int(level), msg)
		return true, nil
	case "stream":
		n, err := argInt(args, 0, op)
		if err != nil {
			return nil, err
		}
		var interval int64
		if len(args) > 1 {
			if interval, err = argInt(args, 1, op); err != nil {
				return nil, err
			}
		}
		return e.newStream(n, time.Duration(interval)*time.Millisecond), nil
	case "record":
		// record(key, value) keeps value; record(key, v1, v2, ...) keeps
		// the array of values (a fire-and-forget call can show its
		// arguments this way)
		if len(args) < 2 {
			return nil, errors.New("echo: record: key and value expected")
		}
		k, _ := core.ToString(args[0])
		var v any = args[1]
		if len(args) > 2 {
			v = args[1:]
		}
		e.mu.Lock()
		e.records[k] = v
		e.mu.Unlock()
		return true, nil
	case "recorded":
		k, _ := core.ToString(args[0])
		e.mu.Lock()
		defer e.mu.Unlock()
		if v, ok := e.records[k]; ok {
			return v, nil
		}
		return core.Null{}, nil
	case "records":
		return records(args)
	case "stats":
		return map[string]any{
			"sleeps_canceled":  e.sleepsCanceled.Load(),
			"streams_open":     e.streamsOpen.Load(),
			"streams_closed":   e.streamsClosed.Load(),
			"streams_canceled": e.streamsCancel.Load(),
		}, nil
	case "goroutines":
		// every goroutine's stack, as a panic prints them: the soak
		// compares them when a count does not come back down
		buf := make([]byte, 64<<10)
		for {
			n := runtime.Stack(buf, true)
			if n < len(buf) {
				return string(buf[:n]), nil
			}
			buf = make([]byte, 2*len(buf))
		}
	}
	return nil, core.UnknownOp("echo", op)
}

// Close marks the runtime closed; echo holds no resources.
func (e *Echo) Close(context.Context) error {
	e.closed.Store(true)
	return nil
}

type detailError struct {
	msg    string
	detail any
}

func (d detailError) Error() string { return d.msg }
func (d detailError) Detail() any   { return d.detail }

// stream yields 1..n from a producer goroutine, so closing it early has a
// Go side to cancel, as a real subscription would.
type stream struct {
	owner  *Echo
	items  chan int64
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (e *Echo) newStream(n int64, interval time.Duration) *stream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{owner: e, items: make(chan int64), cancel: cancel, done: make(chan struct{})}
	e.streamsOpen.Add(1)
	go func() {
		defer close(s.done)
		defer close(s.items)
		for i := int64(1); i <= n; i++ {
			if interval > 0 {
				select {
				case <-time.After(interval):
				case <-ctx.Done():
					e.streamsCancel.Add(1)
					return
				}
			}
			select {
			case s.items <- i:
			case <-ctx.Done():
				e.streamsCancel.Add(1)
				return
			}
		}
	}()
	return s
}

func (s *stream) Call(ctx context.Context, op string, _ []any) (any, error) {
	if op != "recv" {
		return nil, core.UnknownOp("echo stream", op)
	}
	select {
	case v, ok := <-s.items:
		if !ok {
			return nil, core.ErrEOF
		}
		return v, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *stream) Close(context.Context) error {
	s.once.Do(func() {
		s.cancel()
		<-s.done
		s.owner.streamsOpen.Add(-1)
		s.owner.streamsClosed.Add(1)
	})
	return nil
}

// records(keys, rows) returns the rows (arrays of cells, in key order) as
// a Records value, the form tabular results take (core/codec.go).
func records(args []any) (any, error) {
	if len(args) != 2 {
		return nil, errors.New("echo: records: keys and rows expected")
	}
	keys, ok1 := args[0].([]any)
	rows, ok2 := args[1].([]any)
	if !ok1 || !ok2 {
		return nil, errors.New("echo: records: keys and rows must be arrays")
	}
	var e core.Encoder
	names := make([][]byte, len(keys))
	for i, k := range keys {
		s, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("echo: records: key %d is not a string", i+1)
		}
		var ke core.Encoder
		ke.String(s)
		names[i] = ke.Buf
	}
	rec := e.BeginRecords(names)
	for i, r := range rows {
		cells, ok := r.([]any)
		if !ok || len(cells) != len(keys) {
			return nil, fmt.Errorf("echo: records: row %d must be an array of %d cells", i+1, len(keys))
		}
		rec.Next()
		for _, c := range cells {
			if err := e.Encode(c); err != nil {
				return nil, err
			}
		}
	}
	rec.End()
	return core.Raw(e.Buf), nil
}
