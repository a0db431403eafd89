package core

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeObject is a small runtime for the engine tests.
type fakeObject struct {
	closed atomic.Int32
}

func (f *fakeObject) Call(ctx context.Context, op string, args []any) (any, error) {
	switch op {
	case "echo":
		return args, nil
	case "sleep":
		select {
		case <-time.After(time.Duration(args[0].(int64)) * time.Millisecond):
			return "slept", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "panic":
		panic("boom")
	case "detail":
		return nil, testDetailErr{}
	case "child":
		return &fakeObject{}, nil
	case "reply":
		// args[0]: a string to encode; args[1]: nest the reply in an array;
		// args[2]: fail after encoding
		r := NewReply()
		r.String(args[0].(string))
		if args[2].(bool) {
			return r, errors.New("failed after encoding")
		}
		if args[1].(bool) {
			return []any{r, int64(1)}, nil
		}
		return r, nil
	case "ask":
		// a round trip on askConn, or only a read when args[0] is false
		if args[0].(bool) {
			if _, err := askConn.Write([]byte{'?'}); err != nil {
				return nil, err
			}
		}
		buf := make([]byte, 1)
		_, err := askConn.Read(buf)
		return string(buf), err
	}
	return nil, UnknownOp("fake", op)
}

func (f *fakeObject) Close(context.Context) error {
	f.closed.Add(1)
	return nil
}

type testDetailErr struct{}

func (testDetailErr) Error() string { return "with detail" }
func (testDetailErr) Detail() any   { return map[string]any{"code": "X1"} }

func init() {
	Register("fake", func(opts Options) (Object, error) {
		if _, bad := opts["fail"]; bad {
			return nil, errors.New("fake: refused")
		}
		return &fakeObject{}, nil
	})
}

func newTestEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	clear(popped)
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(time.Second) })
	return e
}

func openFake(t *testing.T, e *Engine) Handle {
	t.Helper()
	h, err := e.Open("fake", nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// popped keeps completions drained while awaiting another ticket.
var popped = map[uint64]luaCompletion{}

// await pops completions (as Lua would) until ticket shows up.
func await(t *testing.T, e *Engine, ticket uint64) luaCompletion {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, ok := popped[ticket]; ok {
			delete(popped, ticket)
			return c
		}
		for _, c := range e.rings.luaPop(64) {
			popped[c.Ticket] = c
		}
		if _, ok := popped[ticket]; !ok {
			time.Sleep(time.Millisecond)
		}
	}
	t.Fatalf("ticket %d never completed", ticket)
	return luaCompletion{}
}

func args(t *testing.T, v ...any) []byte {
	b, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCallRoundTrip(t *testing.T) {
	e := newTestEngine(t, Config{})
	h := openFake(t, e)
	if rc := e.rings.luaPush(kindCall, 1, h, "echo", args(t, "hi", int64(2)), 0); rc < 0 {
		t.Fatalf("push: %d", rc)
	}
	c := await(t, e, 1)
	v, err := Decode(c.Data)
	if c.Status != StatusOK || err != nil || !reflect.DeepEqual(v, []any{"hi", int64(2)}) {
		t.Fatalf("got status %d value %#v err %v", c.Status, v, err)
	}
	if e.rings.inFlight() != 0 {
		t.Fatalf("in flight after delivery: %d", e.rings.inFlight())
	}
}

func TestErrorsPanicsAndUnknowns(t *testing.T) {
	e := newTestEngine(t, Config{})
	h := openFake(t, e)
	cases := []struct {
		op, msg string
		detail  any
		object  Handle
	}{
		{"nope", `fake: unknown operation "nope"`, nil, h},
		{"panic", "panic in panic: boom", nil, h},
		{"detail", "with detail", map[string]any{"code": "X1"}, h},
		{"echo", "closed", nil, h + 1000},
	}
	for i, c := range cases {
		ticket := uint64(i + 1)
		e.rings.luaPush(kindCall, ticket, c.object, c.op, nil, 0)
		got := await(t, e, ticket)
		v, _ := Decode(got.Data)
		want := []any{c.msg, c.detail}
		if got.Status != StatusError || !reflect.DeepEqual(v, want) {
			t.Errorf("%s: status %d value %#v, want %#v", c.op, got.Status, v, want)
		}
	}
}

func TestReplyIsSentAsEncoded(t *testing.T) {
	e := newTestEngine(t, Config{})
	h := openFake(t, e)
	cases := []struct {
		name         string
		nested, fail bool
		status       int
		want         any
	}{
		{"whole result", false, false, StatusOK, "abc"},
		{"nested in a result", true, false, StatusOK, []any{"abc", int64(1)}},
		{"returned with an error", false, true, StatusError, []any{"failed after encoding", nil}},
	}
	for i, c := range cases {
		ticket := uint64(i + 1)
		e.rings.luaPush(kindCall, ticket, h, "reply", args(t, "abc", c.nested, c.fail), 0)
		got := await(t, e, ticket)
		v, err := Decode(got.Data)
		if got.Status != c.status || err != nil || !reflect.DeepEqual(v, c.want) {
			t.Errorf("%s: status %d value %#v err %v, want %#v", c.name, got.Status, v, err, c.want)
		}
	}
}

func TestPushOutcomes(t *testing.T) {
	e := newTestEngine(t, Config{MaxInFlight: 2, MaxPayload: 16})
	h := openFake(t, e)
	if rc := e.rings.luaPush(kindCall, 1, h, "echo", make([]byte, 17), 0); rc != -4 {
		t.Fatalf("payload over max_payload: got %d, want -4", rc)
	}
	for i := uint64(1); i <= 2; i++ {
		if rc := e.rings.luaPush(kindCall, i, h, "sleep", args(t, int64(200)), 0); rc < 0 {
			t.Fatalf("push %d: %d", i, rc)
		}
	}
	start := time.Now()
	if rc := e.rings.luaPush(kindCall, 3, h, "sleep", args(t, int64(1)), 0); rc != -1 {
		t.Fatalf("third call with max_in_flight 2: got %d, want -1 (busy)", rc)
	}
	if d := time.Since(start); d > 10*time.Millisecond {
		t.Fatalf("busy took %v: it must not wait", d)
	}
	await(t, e, 1)
	await(t, e, 2)
	e.Shutdown(time.Second)
	if rc := e.rings.luaPush(kindCall, 4, h, "echo", nil, 0); rc != -2 {
		t.Fatalf("after shutdown: got %d, want -2 (closing)", rc)
	}
}

func TestCancelStopsTheCall(t *testing.T) {
	e := newTestEngine(t, Config{})
	h := openFake(t, e)
	e.rings.luaPush(kindCall, 9, h, "sleep", args(t, int64(5000)), 0)
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	e.rings.luaPush(kindCancel, 9, 0, "", nil, 0)
	c := await(t, e, 9)
	if time.Since(start) > time.Second {
		t.Fatal("cancel did not stop the call")
	}
	v, _ := Decode(c.Data)
	if c.Status != StatusError || v.([]any)[0] != "context canceled" {
		t.Fatalf("got %d %#v", c.Status, v)
	}
	st := e.runtimeStats("fake")
	if st.Canceled.Load() != 1 || st.InFlight.Load() != 0 {
		t.Fatalf("canceled %d in flight %d", st.Canceled.Load(), st.InFlight.Load())
	}
}

func TestFireAndForgetNeedsNoDrain(t *testing.T) {
	e := newTestEngine(t, Config{})
	h := openFake(t, e)
	for i := uint64(1); i <= 100; i++ {
		if rc := e.rings.luaPush(kindSubmit, i, h, "echo", args(t, i), 1000); rc < 0 {
			t.Fatalf("submit: %d", rc)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.rings.inFlight() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := e.rings.inFlight(); n != 0 {
		t.Fatalf("in flight: %d", n)
	}
	if d := e.rings.cqDepth(); d != 0 {
		t.Fatalf("fire-and-forget calls queued %d completions", d)
	}
	if got := e.runtimeStats("fake").Completed.Load(); got != 100 {
		t.Fatalf("completed %d of 100", got)
	}
}

func TestHandlesAreClosedChildrenFirst(t *testing.T) {
	e := newTestEngine(t, Config{})
	h := openFake(t, e)
	e.rings.luaPush(kindCall, 1, h, "child", nil, 0)
	v, _ := Decode(await(t, e, 1).Data)
	child, ok := v.(Handle)
	if !ok {
		t.Fatalf("want a handle, got %#v", v)
	}
	obj := e.handles.get(child).obj.(*fakeObject)
	e.rings.luaPush(kindClose, 0, child, "", nil, 0)
	deadline := time.Now().Add(2 * time.Second)
	for obj.closed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if obj.closed.Load() != 1 {
		t.Fatal("close record did not close the object")
	}
	root := e.handles.get(h).obj.(*fakeObject)
	if err := e.Shutdown(time.Second); err != nil {
		t.Fatal(err)
	}
	if root.closed.Load() != 1 {
		t.Fatal("shutdown did not close the runtime")
	}
}

func TestManyConcurrentCalls(t *testing.T) {
	e := newTestEngine(t, Config{})
	h := openFake(t, e)
	const n = 1000
	for i := uint64(1); i <= n; i++ {
		if rc := e.rings.luaPush(kindCall, i, h, "echo", args(t, fmt.Sprint(i)), 0); rc < 0 {
			t.Fatalf("push %d: %d", i, rc)
		}
	}
	seen := map[uint64]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		for _, c := range e.rings.luaPop(256) {
			v, _ := Decode(c.Data)
			if want := []any{fmt.Sprint(c.Ticket)}; !reflect.DeepEqual(v, want) {
				t.Fatalf("ticket %d got %#v", c.Ticket, v)
			}
			seen[c.Ticket] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("%d of %d completed", len(seen), n)
	}
	e.rings.reclaim()
	if a, f := e.rings.allocs.Load(), e.rings.released.Load(); a != f {
		t.Fatalf("buffers allocated %d freed %d", a, f)
	}
}

func TestOpenErrors(t *testing.T) {
	e := newTestEngine(t, Config{})
	if _, err := e.Open("no-such-runtime", nil); err == nil {
		t.Fatal("unknown runtime must fail")
	}
	opts, _ := Encode(map[string]any{"fail": true})
	if _, err := e.Open("fake", opts); err == nil || err.Error() != "fake: refused" {
		t.Fatalf("factory error: %v", err)
	}
	bad, _ := Encode([]any{1})
	if _, err := e.Open("fake", bad); err == nil {
		t.Fatal("options that are not a map must fail")
	}
}

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name string
		in   map[string]any
		ok   bool
	}{
		{"empty", map[string]any{}, true},
		{"all", map[string]any{"max_in_flight": int64(10), "max_payload": int64(100), "socket_dir": "/tmp", "go_max_procs": int64(1)}, true},
		{"negative", map[string]any{"max_in_flight": int64(-1)}, false},
		{"wrong type", map[string]any{"max_payload": "big"}, false},
		{"too many in flight", map[string]any{"max_in_flight": int64(1 << 21)}, false},
		{"unknown", map[string]any{"colour": "red"}, false},
		{"watch off", map[string]any{"pump_spin_us": int64(0)}, true},
		{"watch negative", map[string]any{"pump_spin_us": int64(-1)}, false},
		{"watch too long", map[string]any{"pump_spin_us": int64(2000000)}, false},
		{"keep init pages", map[string]any{"release_init_pages": false}, true},
		{"init pages not a boolean", map[string]any{"release_init_pages": int64(1)}, false},
		{"gc percent", map[string]any{"go_gc_percent": int64(400)}, true},
		{"gc percent zero", map[string]any{"go_gc_percent": int64(0)}, false},
		{"gc percent not an integer", map[string]any{"go_gc_percent": "off"}, false},
	}
	for _, c := range cases {
		if _, err := parseConfig(c.in); (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
	}
}

// sequentialLuaWakes makes calls one after another, each pushed as soon as
// the previous reply is popped, and counts the pushes that had to wake
// the pump themselves (rffi_push returning 1).
func sequentialLuaWakes(t *testing.T, e *Engine, h Handle, first uint64, n int) int {
	t.Helper()
	wakes := 0
	for ticket := first; ticket < first+uint64(n); ticket++ {
		switch rc := e.rings.luaPush(kindCall, ticket, h, "echo", args(t, "x"), 0); rc {
		case 0:
		case 1:
			wakes++
		default:
			t.Fatalf("push %d: rc %d", ticket, rc)
		}
		if c := await(t, e, ticket); c.Status != StatusOK {
			t.Fatalf("call %d: status %d", ticket, c.Status)
		}
	}
	return wakes
}

func TestWatchAfterReply(t *testing.T) {
	cases := []struct {
		name    string
		window  time.Duration
		maxWake int // pushes of 20 that may wake the pump themselves
		minWake int
		// calls of 20 the watch must start itself, in the pump's place
		minWatchStarts uint64
	}{
		// a window far beyond this loop's pace: after the first call the
		// replying goroutine catches the next pushes. A push can still
		// find the pump parked in two short windows (the pump parking
		// just after a reply, before the watch takes its flag; the reply
		// popped before the watch starts), which a loaded machine hits
		// now and then: CI saw 2 of 20 once.
		{"watching", 200 * time.Millisecond, 3, 0, 15},
		// off: the pump parks after each call and every push wakes it
		{"off", -1, 20, 10, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{PumpSpinAfterReply: c.window}
			e := newTestEngine(t, cfg)
			h := openFake(t, e)
			// let the pump park first
			for deadline := time.Now().Add(time.Second); !e.rings.pumpParked() && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			wakes := sequentialLuaWakes(t, e, h, 1, 20)
			if wakes > c.maxWake || wakes < c.minWake {
				t.Fatalf("%d of 20 pushes woke the pump, want %d to %d", wakes, c.minWake, c.maxWake)
			}
			if n := e.watchStarts.Load(); n < c.minWatchStarts || (c.window < 0 && n != 0) {
				t.Fatalf("the watch started %d of 20 calls, want at least %d (0 when off)", n, c.minWatchStarts)
			}
			// once the window has passed, the pump is parked again and a
			// push wakes it as usual: nothing is left on the ring
			time.Sleep(max(c.window, 0) + 50*time.Millisecond)
			if !e.rings.pumpParked() {
				t.Fatal("the pump is not parked after the watch ended")
			}
			if wakes := sequentialLuaWakes(t, e, h, 100, 1); wakes != 1 {
				t.Fatalf("a push after the window: %d wakes, want 1", wakes)
			}
		})
	}
}

// TestSubmissionBlocksAreReused pushes waves of calls whose copies fit a
// spare block or not (ring.c): every result must be its own arguments, so
// a block reused too early or twice would show, and the spare list must
// be in use and within its bound.
func TestSubmissionBlocksAreReused(t *testing.T) {
	e := newTestEngine(t, Config{})
	h := openFake(t, e)
	sizes := []int{0, 10, 240, 250, 300, 5000}
	ticket := uint64(0)
	for wave := 0; wave < 30; wave++ {
		want := map[uint64]string{}
		for i := 0; i < 100; i++ {
			ticket++
			arg := strings.Repeat(string(rune('a'+i%26)), sizes[(wave+i)%len(sizes)])
			want[ticket] = arg
			if rc := e.rings.luaPush(kindCall, ticket, h, "echo", args(t, arg), 0); rc < 0 {
				t.Fatalf("push %d: %d", ticket, rc)
			}
		}
		e.kickPump()
		for tk, arg := range want {
			c := await(t, e, tk)
			v, err := Decode(c.Data)
			if err != nil || !reflect.DeepEqual(v, []any{arg}) {
				t.Fatalf("ticket %d: got %v (%v), want [%d bytes]", tk, v, err, len(arg))
			}
		}
	}
	n, max := e.rings.luaSpareBlocks()
	if n == 0 || n > max {
		t.Fatalf("spare blocks: %d (at most %d)", n, max)
	}
}

// BenchmarkCallBatch measures the Go side of a call: 50 echo calls pushed
// as Lua pushes them (with a timeout, so each gets a deadline), run on
// the worker goroutines, their results popped. ns/op and allocs/op are
// per call.
func BenchmarkCallBatch(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	// Two Ps: one for this goroutine, which plays Lua's thread and polls
	// the completion ring; the pump and the workers run on the other.
	e, err := NewEngine(Config{GoMaxProcs: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Shutdown(time.Second)
	h, err := e.Open("fake", nil)
	if err != nil {
		b.Fatal(err)
	}
	frame, _ := Encode([]any{`{"id":12345,"name":"lua-resty-ffi-go"}`})
	const batch = 50
	popped := newCompletionBuf(batch)
	ticket := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		for i := 0; i < batch; i++ {
			ticket++
			if rc := e.rings.luaPush(kindCall, ticket, h, "echo", frame, 60000); rc < 0 {
				b.Fatalf("push: %d", rc)
			}
		}
		e.kickPump()
		for got := 0; got < batch; {
			got += e.rings.luaDiscard(popped)
		}
	}
}
