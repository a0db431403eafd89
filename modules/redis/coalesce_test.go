package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// concurrently runs n calls at once and returns their results and errors.
func concurrently(n int, fn func(i int) (any, error)) ([]any, []error) {
	res, errs := make([]any, n), make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return res, errs
}

func TestCoalescedCallsGetTheirOwnReplies(t *testing.T) {
	needServer(t, singleAddr)
	r := open(t, core.Options{"addr": singleAddr})
	for i := 0; i < 200; i++ {
		call(t, r, "set", fmt.Sprintf("co:k%d", i), fmt.Sprintf("v%d", i))
	}
	call(t, r, "set", "co:text", "not a number")
	ctx := context.Background()
	res, errs := concurrently(200, func(i int) (any, error) {
		if i%50 == 7 {
			// an error reply stays with its own command
			return r.Call(ctx, "incr", []any{"co:text"})
		}
		return r.Call(ctx, "get", []any{fmt.Sprintf("co:k%d", i)})
	})
	for i := range res {
		if i%50 == 7 {
			var re replyError
			if !errors.As(errs[i], &re) || re.msg != "ERR value is not an integer or out of range" {
				t.Fatalf("call %d: got %v, %v; want the INCR error reply", i, res[i], errs[i])
			}
			continue
		}
		if want := fmt.Sprintf("v%d", i); errs[i] != nil || res[i] != want {
			t.Fatalf("call %d: got %v, %v; want %q", i, res[i], errs[i], want)
		}
	}
	if r.co == nil {
		t.Fatal("the calls did not go through the coalescer")
	}
}

func TestCoalescedCallReturnsAtItsOwnDeadline(t *testing.T) {
	needServer(t, singleAddr)
	r := open(t, core.Options{"addr": singleAddr})
	// An expired caller gets its timeout at once; the others of its batch
	// are answered.
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	res, errs := concurrently(20, func(i int) (any, error) {
		if i == 0 {
			return r.Call(expired, "get", []any{"co:k1"})
		}
		return r.Call(context.Background(), "ping", nil)
	})
	if !errors.Is(errs[0], core.ErrTimeout) {
		t.Fatalf("expired call: got %v, %v; want timeout", res[0], errs[0])
	}
	for i := 1; i < 20; i++ {
		if errs[i] != nil || res[i] != "PONG" {
			t.Fatalf("call %d: %v, %v", i, res[i], errs[i])
		}
	}
}

func TestBlockingCommandsAreNotCoalesced(t *testing.T) {
	needServer(t, singleAddr)
	r := open(t, core.Options{"addr": singleAddr})
	call(t, r, "del", "co:empty-list")
	blocked := make(chan error, 1)
	go func() {
		_, err := r.Call(context.Background(), "blpop", []any{"co:empty-list", int64(2)})
		blocked <- err
	}()
	time.Sleep(50 * time.Millisecond) // the BLPOP is on the wire
	start := time.Now()
	if v := call(t, r, "ping"); v != "PONG" {
		t.Fatalf("ping: %v", v)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("a PING behind a blocking BLPOP took %v", waited)
	}
	if err := <-blocked; err != nil {
		t.Fatalf("blpop: %v", err)
	}
}

func TestCoalescerClosesWithTheRuntime(t *testing.T) {
	needServer(t, singleAddr)
	o, err := New(core.Options{"addr": singleAddr})
	if err != nil {
		t.Fatal(err)
	}
	r := o.(*Runtime)
	call(t, r, "ping")
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Call(context.Background(), "get", []any{"co:k1"}); err == nil || err.Error() != "closed" {
		t.Fatalf("a call after close: %v, want closed", err)
	}
}

func TestPipelinableNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"get", true}, {"GET", true}, {"HGetAll", true}, {"blpop", false}, {"multi", false},
		{"subscribe", false}, {"select", false}, {"wait", false}, {"", false},
		{"averyveryverylongcommandname", false},
	} {
		if got := pipelinable(tc.name); got != tc.want {
			t.Errorf("pipelinable(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
