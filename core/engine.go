package core

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Submit outcomes below zero, mirrored in resty/ffi.lua.
const (
	SubmitBusy          = -1
	SubmitClosing       = -2
	SubmitUnknownObject = -3
	SubmitTooLarge      = -4
	SubmitNotStarted    = -5
)

// FlagNoReply marks a fire-and-forget submit: its result is counted, not
// queued, and no C buffer is allocated for it.
const FlagNoReply = 1

// Config is set once, from rffi.configure / the first load.
type Config struct {
	MaxInFlight    int    // size of the task table ("busy" beyond it)
	MaxPayload     int    // largest argument frame accepted, in bytes
	SocketDir      string // where the doorbell's private directory goes
	MaxPendingLogs int    // log records waiting for the dispatcher
}

func (c *Config) setDefaults() {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 65536
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = 64 << 20
	}
	if c.MaxPendingLogs <= 0 {
		c.MaxPendingLogs = 10000
	}
}

// Engine is the per-process state: one per nginx worker.
type Engine struct {
	cfg     Config
	ctx     context.Context
	stop    context.CancelFunc
	tasks   *taskTable
	handles *handleTable
	queue   completionQueue
	bell    *doorbell
	bufs    *cBuffers
	running sync.WaitGroup
	closing atomic.Bool

	statsMu  sync.Mutex
	runtimes map[string]*RuntimeStats

	logsDropped atomic.Uint64
	ops         sync.Map // interned operation names
}

// NewEngine starts an engine. Nothing runs until the first submit.
func NewEngine(cfg Config) *Engine {
	cfg.setDefaults()
	e := &Engine{
		cfg:      cfg,
		tasks:    newTaskTable(cfg.MaxInFlight),
		handles:  newHandleTable(),
		bufs:     newCBuffers(),
		runtimes: map[string]*RuntimeStats{},
	}
	e.ctx, e.stop = context.WithCancel(context.Background())
	e.bell = newDoorbell(e.Log)
	return e
}

func (e *Engine) runtimeStats(name string) *RuntimeStats {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	s := e.runtimes[name]
	if s == nil {
		s = &RuntimeStats{}
		e.runtimes[name] = s
	}
	return s
}

// Open creates a runtime from a registered factory and returns its handle.
func (e *Engine) Open(name string, optsFrame []byte) (h Handle, err error) {
	if e.closing.Load() {
		return 0, errors.New("shutting down")
	}
	f, err := lookupFactory(name)
	if err != nil {
		return 0, err
	}
	var opts Options
	if len(optsFrame) > 0 {
		v, err := Decode(optsFrame)
		if err != nil {
			return 0, fmt.Errorf("%s options: %w", name, err)
		}
		switch x := v.(type) {
		case nil:
		case map[string]any:
			opts = x
		default:
			return 0, fmt.Errorf("%s options: a table with string keys expected, got %T", name, v)
		}
	}
	if opts == nil {
		opts = Options{}
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: panic while opening: %v", name, r)
			e.Log(LevelErr, err.Error()+"\n"+string(debug.Stack()))
		}
	}()
	obj, err := f(opts)
	if err != nil {
		return 0, err
	}
	return e.handles.add(&entry{obj: obj, stats: e.runtimeStats(name), root: true}), nil
}

func (e *Engine) intern(op []byte) string {
	if v, ok := e.ops.Load(unsafe.String(unsafe.SliceData(op), len(op))); ok {
		return v.(string)
	}
	s := string(op)
	e.ops.Store(s, s)
	return s
}

// Submit starts op on object h with the encoded argument frame args (which
// it copies). It never blocks. It returns a ticket (> 0) or a Submit* code.
func (e *Engine) Submit(h Handle, op []byte, args []byte, timeout time.Duration, flags int) int64 {
	if e.closing.Load() {
		return SubmitClosing
	}
	if len(args) > e.cfg.MaxPayload {
		return SubmitTooLarge
	}
	ent := e.handles.get(h)
	if ent == nil {
		return SubmitUnknownObject
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(e.ctx, timeout)
	} else {
		ctx, cancel = context.WithCancel(e.ctx)
	}
	ticket, ok := e.tasks.acquire(cancel)
	if !ok {
		cancel()
		return SubmitBusy
	}
	t := &task{
		engine: e, entry: ent, ticket: ticket, ctx: ctx, cancel: cancel,
		op: e.intern(op), args: append([]byte(nil), args...), noReply: flags&FlagNoReply != 0,
	}
	ent.stats.Submitted.Add(1)
	ent.stats.InFlight.Add(1)
	ent.stats.BytesIn.Add(uint64(len(args)))
	e.running.Add(1)
	go t.run()
	return int64(ticket)
}

// Cancel cancels a task's context; its result, if any, is still queued so
// its buffer has an owner (the dispatcher frees results nobody waits for).
func (e *Engine) Cancel(ticket uint64) bool { return e.tasks.cancel(ticket) }

// CloseHandle removes h and closes its object in the background.
func (e *Engine) CloseHandle(h Handle) bool {
	ent := e.handles.remove(h)
	if ent == nil {
		return false
	}
	go func() {
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		defer cancel()
		e.closeObject(ctx, ent)
	}()
	return true
}

func (e *Engine) closeObject(ctx context.Context, ent *entry) {
	defer func() {
		if r := recover(); r != nil {
			e.Log(LevelErr, fmt.Sprintf("panic while closing %T: %v", ent.obj, r))
		}
	}()
	if err := ent.obj.Close(ctx); err != nil {
		e.Log(LevelWarn, fmt.Sprintf("closing %T: %v", ent.obj, err))
	}
}

// Listen opens a doorbell socket and returns its path.
func (e *Engine) Listen() (string, error) { return e.bell.listen(e.cfg.SocketDir) }

// Drain moves finished completions into out (see completionQueue.drain).
func (e *Engine) drain(out []completion, arm bool) int { return e.queue.drain(out, arm) }

func (e *Engine) complete(c completion) {
	if e.queue.push(c) {
		e.bell.ring()
	}
}

// Shutdown stops taking work, waits for running tasks until the deadline,
// then closes every object (children first), each with what is left of
// the deadline, and finally cancels whatever still runs.
func (e *Engine) Shutdown(timeout time.Duration) error {
	if !e.closing.CompareAndSwap(false, true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan struct{})
	go func() { e.running.Wait(); close(done) }()
	var errs []error
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("%d tasks still running at the deadline", e.tasks.inFlight()))
	}
	children, roots := e.handles.takeAll()
	for _, group := range [][]*entry{children, roots} {
		var wg sync.WaitGroup
		for _, ent := range group {
			wg.Add(1)
			go func() { defer wg.Done(); e.closeObject(ctx, ent) }()
		}
		wg.Wait()
	}
	e.stop()
	select {
	case <-done:
	case <-time.After(100 * time.Millisecond):
	}
	e.bell.close()
	if ctx.Err() != nil {
		errs = append(errs, errors.New("deadline passed while closing runtimes"))
	}
	return errors.Join(errs...)
}

// ReleaseUndrained frees the buffers of completions nobody will drain.
func (e *Engine) ReleaseUndrained() {
	for _, c := range e.queue.takeAll() {
		e.bufs.free(c.data)
	}
}

// task is one submitted call.
type task struct {
	engine  *Engine
	entry   *entry
	ticket  uint64
	ctx     context.Context
	cancel  context.CancelFunc
	op      string
	args    []byte
	noReply bool
}

var encoderPool = sync.Pool{New: func() any { return &Encoder{Buf: make([]byte, 0, 256)} }}

func (t *task) run() {
	e, st := t.engine, t.entry.stats
	var res any
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic in %s: %v", t.op, r)
				e.Log(LevelErr, err.Error()+"\n"+string(debug.Stack()))
			}
		}()
		var args []any
		args, err = DecodeArgs(t.args)
		if err != nil {
			err = fmt.Errorf("%s: decoding arguments: %w", t.op, err)
			return
		}
		res, err = t.entry.obj.Call(t.ctx, t.op, args)
	}()
	if err != nil && t.ctx.Err() != nil {
		if errors.Is(t.ctx.Err(), context.DeadlineExceeded) {
			err = ErrTimeout
		}
		st.Canceled.Add(1)
	}
	t.cancel()
	defer func() {
		st.InFlight.Add(-1)
		e.tasks.release(t.ticket)
		e.running.Done()
	}()
	if t.noReply {
		if err != nil {
			st.Failed.Add(1)
			if !errors.Is(err, context.Canceled) {
				e.Log(LevelErr, fmt.Sprintf("%s (submitted without waiting) failed: %v", t.op, err))
			}
		} else {
			st.Completed.Add(1)
		}
		return
	}
	enc := encoderPool.Get().(*Encoder)
	enc.Buf = enc.Buf[:0]
	enc.Register = func(o Object) (Handle, error) {
		return e.handles.add(&entry{obj: o, stats: st}), nil
	}
	status := int32(StatusOK)
	if err == nil {
		if encErr := enc.Encode(res); encErr != nil {
			err = fmt.Errorf("%s: encoding the result: %w", t.op, encErr)
			enc.Buf = enc.Buf[:0]
		}
	}
	if err != nil {
		status = StatusError
		encodeError(enc, err)
		st.Failed.Add(1)
	} else {
		st.Completed.Add(1)
	}
	st.BytesOut.Add(uint64(len(enc.Buf)))
	p, n := e.bufs.alloc(enc.Buf)
	enc.Register = nil
	if cap(enc.Buf) <= 1<<20 {
		encoderPool.Put(enc)
	}
	e.complete(completion{ticket: t.ticket, status: status, data: p, size: n})
}

// encodeError writes [message, detail] for the Lua side.
func encodeError(enc *Encoder, err error) {
	enc.ArrayHeader(2)
	enc.String(err.Error())
	var de DetailedError
	if errors.As(err, &de) {
		if derr := enc.Encode(de.Detail()); derr == nil {
			return
		}
	}
	enc.Buf = append(enc.Buf, 0xc0)
}

// NumGoroutine is reported in stats so leaks show.
func NumGoroutine() int { return runtime.NumGoroutine() }
