package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Config is set once, from rffi.configure / the first load.
type Config struct {
	MaxInFlight    int    // calls accepted and not yet delivered ("busy" beyond)
	MaxPayload     int    // largest argument frame accepted, in bytes
	SocketDir      string // where the doorbell's private directory goes
	MaxPendingLogs int    // log records waiting for the dispatcher
	PumpSpins      int    // how many times the idle pump yields before sleeping
	// PumpSpinAfterReply is how long the ring is watched after a reply
	// when no other call runs (watchForNextCall): 0 for the default
	// (100 us), negative to turn it off.
	PumpSpinAfterReply time.Duration
	GoMaxProcs         int // GOMAXPROCS for this worker's Go runtime (default 1)
	// GCPercent is GOGC for this worker's Go runtime (default 200). Set
	// here because the runtime of a shared library reads its environment
	// from the process's initial one: nginx's env directive does not
	// reach it.
	GCPercent int
	// ShutdownTimeout bounds the flush at process exit (default 5 s).
	ShutdownTimeout time.Duration
	// KeepInitPages keeps the library's read-only pages that loading
	// touched mapped (rffi_init releases them by default; initpages.c).
	KeepInitPages bool
}

func (c *Config) setDefaults() {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 16384
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = 64 << 20
	}
	if c.MaxPendingLogs <= 0 {
		c.MaxPendingLogs = 4096
	}
	if c.GoMaxProcs <= 0 {
		// One P per worker: nginx runs a worker per core, and a single P
		// avoids waking idle Ps on every hand-off (measured in bench/).
		c.GoMaxProcs = 1
	}
	if c.GCPercent <= 0 {
		// Twice Go's default: a call allocates about 400 bytes, so at
		// 80k calls/s a heap of a few MB is collected several times a
		// second. On the core bench 200 made echo 13% faster (median of
		// 5 alternating rounds) for about 1.3 MB more RSS after 10k calls.
		c.GCPercent = 200
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	if c.PumpSpinAfterReply < 0 {
		c.PumpSpinAfterReply = 0
	} else if c.PumpSpinAfterReply == 0 {
		c.PumpSpinAfterReply = 100 * time.Microsecond
	}
	if c.PumpSpins <= 0 {
		// Spinning keeps a core busy that nginx may need (a worker pinned
		// to one CPU shares it with its Go threads): one yield only.
		c.PumpSpins = 1
	}
}

// idleWorkers bounds the goroutines kept waiting for calls (workers.go).
const idleWorkers = 64

// Engine is the per-process state: one per nginx worker.
type Engine struct {
	cfg     Config
	ctx     context.Context
	stop    context.CancelFunc
	rings   *rings
	wake    *os.File // eventfd the pump sleeps on
	handles *handleTable
	bell    *doorbell
	running sync.WaitGroup
	workers *workerPool
	closing atomic.Bool
	pumpEnd chan struct{}

	cancelMu sync.Mutex
	cancels  map[uint64]context.CancelFunc

	statsMu  sync.Mutex
	runtimes map[string]*RuntimeStats

	// busy counts calls between the pump and their result
	// (watchForNextCall).
	busy atomic.Int64

	logsDropped atomic.Uint64
	pumpWakeups atomic.Uint64 // times the pump slept and was woken by Lua
	readSpins   atomic.Uint64 // socket reads that waited spinning (readSpinDeadline)
	watchStarts atomic.Uint64 // records a watch started in the pump's place
	// consumeMu makes the pump and a watch take turns on the submission
	// ring (startSubmissions); poolStopped, under it, is set once the
	// worker pool is closed.
	consumeMu   sync.Mutex
	poolStopped bool
	// initPagesReleased is how many bytes of the library's read-only
	// segments rffi_init released after loading (initpages.c).
	initPagesReleased atomic.Uint64
	ops               sync.Map // interned operation names
}

// NewEngine creates the shared memory and starts the pump goroutine.
func NewEngine(cfg Config) (*Engine, error) {
	cfg.setDefaults()
	debug.SetGCPercent(cfg.GCPercent)
	if cfg.GoMaxProcs > 0 {
		runtime.GOMAXPROCS(cfg.GoMaxProcs)
	}
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating the pump's eventfd: %w", err)
	}
	e := &Engine{
		cfg:      cfg,
		rings:    newRings(cfg, fd),
		wake:     os.NewFile(uintptr(fd), "resty-ffi-pump"),
		handles:  newHandleTable(),
		cancels:  map[uint64]context.CancelFunc{},
		runtimes: map[string]*RuntimeStats{},
		pumpEnd:  make(chan struct{}),
		workers:  newWorkerPool(idleWorkers),
	}
	e.ctx, e.stop = context.WithCancel(context.Background())
	e.bell = newDoorbell(e.Log)
	go e.pump()
	return e, nil
}

// loneCall reports whether the one call Go runs is the only one Lua
// waits for (the condition for spinning instead of sleeping).
func (e *Engine) loneCall() bool {
	return e.cfg.PumpSpinAfterReply > 0 && e.busy.Load() == 1 && e.rings.inFlight() == 1
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
	opts, err := DecodeOptions(optsFrame)
	if err != nil {
		return 0, fmt.Errorf("%s options: %w", name, err)
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
	return e.handles.add(e.newEntry(obj, e.runtimeStats(name), true)), nil
}

// newEntry makes the handle table's entry for obj. Objects its calls
// return become entries counted in the same stats.
func (e *Engine) newEntry(obj Object, st *RuntimeStats, root bool) *entry {
	ent := &entry{obj: obj, stats: st, root: root}
	ent.register = func(o Object) (Handle, error) {
		return e.handles.add(e.newEntry(o, st, false)), nil
	}
	return ent
}

func (e *Engine) intern(op []byte) string {
	if v, ok := e.ops.Load(unsafe.String(unsafe.SliceData(op), len(op))); ok {
		return v.(string)
	}
	s := string(op)
	e.ops.Store(s, s)
	return s
}

// pump is the one goroutine that takes submissions off the ring and turns
// them into goroutines. It yields a few times when the ring is empty (a
// busy worker keeps it awake without system calls), then sleeps on the
// eventfd, which Lua writes only when it sees the pump asleep.
func (e *Engine) pump() {
	defer close(e.pumpEnd)
	batch := make([]submission, 256)
	var wakeBuf [8]byte
	for {
		if e.startSubmissions(batch) > 0 {
			continue
		}
		if e.ctx.Err() != nil {
			return
		}
		idle := true
		for i := 0; i < e.cfg.PumpSpins && idle; i++ {
			runtime.Gosched()
			idle = e.rings.sqEmpty()
		}
		if !idle {
			continue
		}
		e.rings.setParked(1)
		if !e.rings.sqEmpty() {
			e.rings.setParked(0)
			continue
		}
		e.pumpWakeups.Add(1)
		if err := e.sleepOnEventfd(wakeBuf[:]); err != nil && e.ctx.Err() == nil {
			// cannot happen short of a closed fd; do not spin on it
			e.Log(LevelErr, "pump: reading its eventfd: "+err.Error())
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// startSubmissions takes the waiting records off the ring and starts
// them, in ring order. The pump does, and so does a watch that holds the
// pump's flag (watchForNextCall): the mutex keeps them one at a time, so
// the ring keeps a single consumer and the records their order (a cancel
// after its call). After Shutdown has stopped the worker pool it starts
// nothing.
func (e *Engine) startSubmissions(batch []submission) int {
	e.consumeMu.Lock()
	defer e.consumeMu.Unlock()
	if e.poolStopped {
		return 0
	}
	n := e.rings.popSubmissions(batch)
	if n == 0 {
		return 0
	}
	// one clock read for the batch's deadlines: on a VM a clock read can
	// cost a tenth of a microsecond, and the batch was read at one moment
	now := time.Now()
	for i := 0; i < n; i++ {
		e.start(&batch[i], now)
		batch[i] = submission{}
	}
	return n
}

// watchForNextCall keeps the goroutine that has just published a reply on
// the submission ring for a moment, in the pump's place, and starts the
// next call itself if one comes. A request that calls in a loop submits
// its next call as soon as it has the reply; caught here, that call needs
// neither Lua's eventfd write nor the pump thread's wake-up and eventfd
// read, and on a VM a thread's wake-up costs tens of microseconds. The
// caller is the only call running: yielding to itself, it keeps the
// netpoller from noticing other calls' sockets.
//
// While it holds pump_parked at 0 (swapped from 1, as Lua would) the pump
// sleeps and nobody else wakes it, so the watch may consume the ring. It
// then hands the flag back: the pump is still asleep, and whoever swaps
// the flag from 1 to 0 (Lua in rffi_push, or this) writes the eventfd.
func (e *Engine) watchForNextCall() {
	owner := false // pump_parked swapped from 1 to 0 by us
	deadline := time.Now().Add(e.cfg.PumpSpinAfterReply)
	for time.Now().Before(deadline) {
		// The pump may still be awake (a quick call); it parks once it
		// sees the ring empty, and then the watch is ours.
		if !owner && e.rings.casParked(1, 0) {
			owner = true
		}
		if !e.rings.sqEmpty() {
			if !owner {
				return // the pump is awake and takes it
			}
			var batch [8]submission
			for {
				n := e.startSubmissions(batch[:])
				e.watchStarts.Add(uint64(n))
				if n < len(batch) {
					break
				}
			}
			break
		}
		spinYield()
	}
	if owner {
		e.rings.setParked(1)
		if !e.rings.sqEmpty() && e.rings.casParked(1, 0) {
			e.writeEventfd()
		}
	}
}

// spinYield is one turn of a wait that spins instead of sleeping (the
// watch after a reply, a lone call's socket read): other goroutines run,
// then sched_yield gives the CPU to nginx when both share it.
func spinYield() {
	runtime.Gosched()
	unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}

// writeEventfd wakes the pump (a raw system call: see sleepOnEventfd).
func (e *Engine) writeEventfd() {
	one := [8]byte{1}
	unix.RawSyscall(unix.SYS_WRITE, e.wake.Fd(), uintptr(unsafe.Pointer(&one[0])), 8)
}

// sleepOnEventfd waits until Lua writes the eventfd. The read itself is a
// raw system call: the fd is non-blocking, and a plain syscall would wake
// Go's sysmon thread on every round, which costs more than the read.
func (e *Engine) sleepOnEventfd(buf []byte) error {
	rc, err := e.wake.SyscallConn()
	if err != nil {
		return err
	}
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		if errno == unix.EAGAIN {
			return false // not yet: park in the netpoller
		}
		if errno != 0 {
			rerr = errno
		}
		return true
	})
	if err != nil {
		return err
	}
	return rerr
}

// WithDeadlineOnly returns parent reporting deadline from Deadline(),
// without the timer context.WithDeadline starts: clients that take their
// socket deadlines from ctx.Deadline() (go-redis, net.Conn based
// libraries) stop reading in time, and whoever owns parent cancels it.
// The core gives it to waited-for calls (Lua cancels the context when its
// wait times out); modules may use it for work shared by several calls.
func WithDeadlineOnly(parent context.Context, deadline time.Time) context.Context {
	return deadlineCtx{Context: parent, deadline: deadline}
}

type deadlineCtx struct {
	context.Context
	deadline time.Time
}

func (c deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// cancelCall cancels the context of the waited-for call with ticket, if
// it still runs.
func (e *Engine) cancelCall(ticket uint64) {
	e.cancelMu.Lock()
	cancel := e.cancels[ticket]
	e.cancelMu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// start handles one submission record, taken off the ring at now.
func (e *Engine) start(s *submission, now time.Time) {
	switch s.kind {
	case kindCancel:
		e.cancelCall(s.ticket)
		return
	case kindClose:
		e.CloseHandle(s.object)
		return
	}
	data := s.data
	noReply := s.kind == kindSubmit
	ent := e.handles.get(s.object)
	if ent == nil {
		e.finish(s.ticket, noReply, StatusError, errorFrame(errClosed))
		return
	}
	t := &task{
		engine: e, entry: ent, ticket: s.ticket,
		op: e.intern(data[:s.opLen]), args: data[s.opLen:], noReply: noReply,
	}
	// A waited-for call is canceled by Lua when its wait times out (an
	// RFFI_CANCEL record), so only fire-and-forget calls need a Go timer.
	if noReply && s.timeout > 0 {
		t.ctx, t.cancel = context.WithTimeout(e.ctx, time.Duration(s.timeout)*time.Millisecond)
	} else {
		// Not derived from e.ctx: a child of a cancelable parent is also
		// entered in the parent's set under its lock, on every call.
		// Shutdown cancels waited-for calls through e.cancels instead.
		t.ctx, t.cancel = context.WithCancel(context.Background())
		if s.timeout > 0 {
			// WithDeadlineOnly's value, kept in the task: no allocation
			t.deadline = deadlineCtx{Context: t.ctx, deadline: now.Add(time.Duration(s.timeout) * time.Millisecond)}
			t.ctx = &t.deadline
		}
	}
	if !noReply {
		e.cancelMu.Lock()
		e.cancels[s.ticket] = t.cancel
		e.cancelMu.Unlock()
		if e.closing.Load() {
			t.cancel() // Shutdown's pass over e.cancels may have run already
		}
	}
	ent.stats.Submitted.Add(1)
	ent.stats.InFlight.Add(1)
	ent.stats.BytesIn.Add(uint64(len(t.args)))
	e.running.Add(1)
	e.busy.Add(1)
	e.workers.run(t)
}

// finish publishes an encoded result (or, for fire-and-forget calls, only
// counts it). The ring keeps a copy: frame stays the caller's.
func (e *Engine) finish(ticket uint64, noReply bool, status int32, frame []byte) {
	if noReply {
		e.rings.finishNoReply()
		return
	}
	if _, ring := e.rings.pushCompletion(ticket, status, 0, frame); ring {
		e.bell.ring()
	}
}

// CloseHandle removes h and closes its object in the background.
func (e *Engine) CloseHandle(h Handle) bool {
	ent := e.handles.remove(h)
	if ent == nil {
		return false
	}
	e.running.Add(1)
	go func() {
		defer e.running.Done()
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

// Shutdown stops taking calls, waits for running ones until the deadline,
// then closes every object (children first) with what is left of it, and
// finally cancels whatever still runs.
func (e *Engine) Shutdown(timeout time.Duration) error {
	if !e.closing.CompareAndSwap(false, true) {
		return nil
	}
	started := time.Now()
	e.rings.setClosing()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Records pushed before closing was set are still taken by the pump.
	// Every push that finds it asleep wakes it; the kick costs one empty
	// round at most, and a pump that slept through a lost wake-up would
	// hold shutdown until its deadline.
	e.kickPump()
	for !e.rings.sqEmpty() && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	// Nobody will read the results of waited-for calls any more (a worker
	// exits once its requests are done): stop them now. Fire-and-forget
	// calls keep running until the deadline: they may be sends to finish.
	e.cancelMu.Lock()
	for _, cancel := range e.cancels {
		cancel()
	}
	e.cancelMu.Unlock()
	done := make(chan struct{})
	go func() { e.running.Wait(); close(done) }()
	var errs []error
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("%d calls still running at the deadline", e.rings.inFlight()))
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
	e.kickPump()
	select {
	case <-done:
	case <-time.After(100 * time.Millisecond):
	}
	<-e.pumpEnd
	e.consumeMu.Lock()
	e.poolStopped = true
	e.workers.stop()
	e.consumeMu.Unlock()
	e.bell.close()
	if ctx.Err() != nil {
		errs = append(errs, errors.New("deadline passed while closing runtimes"))
	}
	err := errors.Join(errs...)
	if err != nil {
		e.Log(LevelWarn, fmt.Sprintf("shut down in %v, %d objects closed: %v", time.Since(started).Round(time.Millisecond), len(children)+len(roots), err))
	} else {
		e.Log(LevelNotice, fmt.Sprintf("shut down in %v, %d objects closed", time.Since(started).Round(time.Millisecond), len(children)+len(roots)))
	}
	return err
}

// kickPump wakes the pump goroutine whether or not it is parked (a
// spurious wake-up only costs it one empty round).
func (e *Engine) kickPump() {
	e.rings.setParked(0)
	e.writeEventfd()
}

// task is one submitted call.
type task struct {
	engine *Engine
	entry  *entry
	ticket uint64
	ctx    context.Context
	cancel context.CancelFunc
	// deadline is ctx when the call has a timeout (see start)
	deadline deadlineCtx
	op       string
	args     []byte // the encoded argument frame
	noReply  bool
}

var encoderPool = sync.Pool{New: func() any { return &Encoder{} }}

func (t *task) call() (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in %s: %v", t.op, r)
			t.engine.Log(LevelErr, err.Error()+"\n"+string(debug.Stack()))
		}
	}()
	args, err := DecodeArgs(t.args)
	t.args = nil
	if err != nil {
		return nil, fmt.Errorf("%s: decoding arguments: %w", t.op, err)
	}
	return t.entry.obj.Call(t.ctx, t.op, args)
}

func (t *task) run() {
	e, st := t.engine, t.entry.stats
	defer e.running.Done()
	defer e.busy.Add(-1)
	res, err := t.call()
	if err != nil && t.ctx.Err() != nil {
		if errors.Is(t.ctx.Err(), context.DeadlineExceeded) {
			err = ErrTimeout
		}
		st.Canceled.Add(1)
	}
	t.cancel()
	if !t.noReply {
		e.cancelMu.Lock()
		delete(e.cancels, t.ticket)
		e.cancelMu.Unlock()
	}
	st.InFlight.Add(-1)
	reply, _ := res.(*Reply)
	if reply != nil && (err != nil || t.noReply) {
		reply.Release()
		reply = nil
	}
	if t.noReply {
		if err != nil {
			st.Failed.Add(1)
			if !errors.Is(err, context.Canceled) {
				e.Log(LevelErr, fmt.Sprintf("%s (submitted without waiting) failed: %v", t.op, err))
			}
		} else {
			st.Completed.Add(1)
		}
		e.finish(t.ticket, true, 0, nil)
		return
	}
	if reply != nil {
		// encoded by the module: hand its bytes over as they are
		st.Completed.Add(1)
		st.BytesOut.Add(uint64(len(reply.Buf)))
		e.finish(t.ticket, false, StatusOK, reply.Buf)
		reply.Release()
		t.afterReply()
		return
	}
	enc := encoderPool.Get().(*Encoder)
	bp, buf := getBuffer()
	enc.Buf, enc.Register = buf, t.entry.register
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
	e.finish(t.ticket, false, status, enc.Buf)
	putBuffer(bp, enc.Buf)
	enc.Buf, enc.Register = nil, nil
	encoderPool.Put(enc)
	t.afterReply()
}

// afterReply watches the ring for the next call after a lone call's
// reply. Only for a lone call: under concurrency the pump is kept awake by
// the traffic itself, and spinning would take CPU from nginx.
func (t *task) afterReply() {
	if t.engine.loneCall() {
		t.engine.watchForNextCall()
	}
}

// errClosed answers a call on an object that was closed meanwhile.
var errClosed = errors.New("closed")

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
