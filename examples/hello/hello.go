// Package hello is the "write your own Go module" example of the README:
// a runtime that greets, counts and waits, built into the library by one
// import line in lib/main.go.
package hello

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

func init() { core.Register("hello", New) }

// Hello is one runtime: Lua gets it with rffi.open("hello", { greeting = "..." }).
type Hello struct {
	greeting string
	calls    atomic.Int64
}

// New builds a runtime from the Lua options table. It must not block.
func New(opts core.Options) (core.Object, error) {
	h := &Hello{greeting: "hello"}
	if g, ok := opts["greeting"]; ok {
		s, ok := g.(string)
		if !ok {
			return nil, fmt.Errorf("hello: option greeting must be a string, got %T", g)
		}
		h.greeting = s
	}
	return h, nil
}

// Call runs on its own goroutine; ctx ends when Lua stops waiting.
func (h *Hello) Call(ctx context.Context, op string, args []any) (any, error) {
	h.calls.Add(1)
	switch op {
	case "greet": // greet(name) -> "hello, name"
		if len(args) != 1 {
			return nil, fmt.Errorf("hello: greet takes a name")
		}
		name, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("hello: greet: the name must be a string, got %T", args[0])
		}
		return h.greeting + ", " + name, nil
	case "count": // count() -> how many calls this runtime served
		return h.calls.Load(), nil
	case "wait": // wait(ms) -> true, or the context's error
		ms, _ := args[0].(int64)
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return true, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, core.UnknownOp("hello", op)
}

// Close releases what the runtime holds (nothing here).
func (h *Hello) Close(context.Context) error { return nil }
