package core

/*
#include <stdlib.h>
#include <string.h>
#include "rffi.h"
*/
import "C"

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// Completion status values, mirrored in resty/ffi.lua.
const (
	StatusOK    = 0
	StatusError = 1
	StatusLog   = 2
)

// Submission kinds (rffi.h).
const (
	kindCall   = C.RFFI_CALL
	kindSubmit = C.RFFI_SUBMIT
	kindCancel = C.RFFI_CANCEL
	kindClose  = C.RFFI_CLOSE
)

// rings is the Go half of the memory shared with Lua (rffi.h): the
// submission ring Go consumes and the completion ring Go produces. Neither
// path makes a cgo call (each would wake Go's sysmon thread): Go copies
// submissions out before it advances sq_head (Lua frees the C copies
// behind it), and completions point at off-heap slab memory (slab.go)
// that Go reclaims once Lua has moved cq_head past it. No Go pointer is
// ever stored in memory Lua reads.
type rings struct {
	s     *C.rffi_shared_t
	sqCap uint64
	cqCap uint64
	maxIn uint64

	cqMu      sync.Mutex // Go has many producers; Lua is the one consumer
	keep      []slabBuf  // the memory of each completion slot, until reclaimed
	mem       slabs
	reclaimed uint64 // slots before this are reclaimed

	allocs   atomic.Uint64 // buffers handed to Lua
	released atomic.Uint64 // buffers Lua was done with
}

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

func newRings(cfg Config, wakeFD int) *rings {
	s := (*C.rffi_shared_t)(C.calloc(1, C.sizeof_rffi_shared_t))
	sqCap := nextPow2(min(max(cfg.MaxInFlight, 1024), 16384))
	// Room for every call's completion plus the pending log records, so
	// a call's completion always fits.
	cqCap := nextPow2(cfg.MaxInFlight + cfg.MaxPendingLogs)
	s.sq = (*C.rffi_task_t)(C.calloc(C.size_t(sqCap), C.sizeof_rffi_task_t))
	s.cq = (*C.rffi_completion_t)(C.calloc(C.size_t(cqCap), C.sizeof_rffi_completion_t))
	s.sq_mask = C.uint32_t(sqCap - 1)
	s.cq_mask = C.uint32_t(cqCap - 1)
	s.max_in_flight = C.int64_t(cfg.MaxInFlight)
	s.max_payload = C.int64_t(cfg.MaxPayload)
	s.wake_fd = C.int32_t(wakeFD)
	return &rings{
		s: s, sqCap: uint64(sqCap), cqCap: uint64(cqCap), maxIn: uint64(cfg.MaxInFlight),
		keep: make([]slabBuf, cqCap),
	}
}

func (r *rings) sharedPtr() unsafe.Pointer { return unsafe.Pointer(r.s) }

func u64(p *C.uint64_t) *uint64 { return (*uint64)(unsafe.Pointer(p)) }
func i64(p *C.int64_t) *int64   { return (*int64)(unsafe.Pointer(p)) }
func i32(p *C.int32_t) *int32   { return (*int32)(unsafe.Pointer(p)) }

// submission is one record taken off the submission ring.
type submission struct {
	kind    int
	ticket  uint64
	object  Handle
	timeout int32
	opLen   int
	data    []byte // Go's copy: op name then argument frame
}

// popSubmissions copies the waiting records into out, then advances
// sq_head, which lets Lua free their C copies.
func (r *rings) popSubmissions(out []submission) int {
	head := *u64(&r.s.sq_head) // only the consumer (startSubmissions) writes head
	tail := atomic.LoadUint64(u64(&r.s.sq_tail))
	n := 0
	sq := unsafe.Slice(r.s.sq, r.sqCap)
	for head != tail && n < len(out) {
		t := &sq[head&(r.sqCap-1)]
		sub := submission{
			kind: int(t.kind), ticket: uint64(t.ticket), object: Handle(t.object),
			timeout: int32(t.timeout_ms), opLen: int(t.op_len),
		}
		if t.data != nil && t.len > 0 {
			sub.data = append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(t.data)), int(t.len))...)
		}
		out[n] = sub
		n++
		head++
	}
	atomic.StoreUint64(u64(&r.s.sq_head), head)
	return n
}

func (r *rings) sqEmpty() bool {
	return atomic.LoadUint64(u64(&r.s.sq_head)) == atomic.LoadUint64(u64(&r.s.sq_tail))
}

// emptyBuffer gives zero-length completions a valid address. It lives in
// C memory: a Go address must not be stored where Lua reads.
var emptyBuffer = C.calloc(1, 1)

// errorFrame is the [message, detail] frame of an error.
func errorFrame(err error) []byte {
	var enc Encoder
	encodeError(&enc, err)
	return enc.Buf
}

// reclaimLocked takes back the memory of the completions Lua is done with.
// cqMu must be held.
func (r *rings) reclaimLocked() {
	head := atomic.LoadUint64(u64(&r.s.cq_head))
	for ; r.reclaimed != head; r.reclaimed++ {
		i := r.reclaimed & (r.cqCap - 1)
		r.mem.release(r.keep[i])
		r.keep[i] = slabBuf{}
		r.released.Add(1)
	}
}

// pushCompletion publishes a copy of buf (the caller keeps buf) and
// reports whether the dispatcher asked to be woken. Log records may only
// use the room beyond what max_in_flight calls need; when it is full they
// are refused. A call's result that cannot get memory becomes an error.
func (r *rings) pushCompletion(ticket uint64, status, level int32, buf []byte) (ok, ring bool) {
	r.cqMu.Lock()
	r.reclaimLocked()
	tail := *u64(&r.s.cq_tail)
	head := atomic.LoadUint64(u64(&r.s.cq_head))
	if status == StatusLog && tail-head >= r.cqCap-r.maxIn {
		r.cqMu.Unlock()
		return false, false
	}
	i := tail & (r.cqCap - 1)
	p := emptyBuffer
	if len(buf) > 0 {
		mem, err := r.mem.alloc(len(buf))
		if err != nil {
			if status == StatusLog {
				r.cqMu.Unlock()
				return false, false
			}
			buf = errorFrame(err)
			if mem, err = r.mem.alloc(len(buf)); err != nil {
				panic("resty.ffi: out of memory for results: " + err.Error())
			}
			status = StatusError
		}
		copy(mem.bytes(len(buf)), buf)
		r.keep[i] = mem
		p = mem.p
	}
	c := &unsafe.Slice(r.s.cq, r.cqCap)[i]
	c.ticket = C.uint64_t(ticket)
	c.status = C.int32_t(status)
	c.level = C.int32_t(level)
	c.data = (*C.char)(p)
	c.len = C.size_t(len(buf))
	atomic.StoreUint64(u64(&r.s.cq_tail), tail+1)
	r.cqMu.Unlock()
	r.allocs.Add(1)
	armed := i32(&r.s.armed)
	return true, atomic.LoadInt32(armed) == 1 && atomic.SwapInt32(armed, 0) == 1
}

// reclaim releases what Lua is done with (stats call it so the counters
// settle even when nothing new is pushed).
func (r *rings) reclaim() {
	r.cqMu.Lock()
	r.reclaimLocked()
	r.cqMu.Unlock()
}

func (r *rings) cqDepth() uint64 {
	return atomic.LoadUint64(u64(&r.s.cq_tail)) - atomic.LoadUint64(u64(&r.s.cq_head))
}

func (r *rings) sqDepth() uint64 {
	return atomic.LoadUint64(u64(&r.s.sq_tail)) - atomic.LoadUint64(u64(&r.s.sq_head))
}

func (r *rings) inFlight() int64 { return atomic.LoadInt64(i64(&r.s.in_flight)) }

// finishNoReply ends a fire-and-forget call: nobody drains it, so the
// in-flight count drops here instead of in rffi_done_completions.
func (r *rings) finishNoReply() { atomic.AddInt64(i64(&r.s.in_flight), -1) }

func (r *rings) setClosing() { atomic.StoreInt32(i32(&r.s.closing), 1) }

func (r *rings) setParked(v int32) { atomic.StoreInt32(i32(&r.s.pump_parked), v) }

func (r *rings) casParked(old, new int32) bool {
	return atomic.CompareAndSwapInt32(i32(&r.s.pump_parked), old, new)
}

// Result buffers are reused once Lua is done with them. The pool holds
// pointers, which go back into it without an allocation.
var bufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// getBuffer returns an empty buffer and the pool entry to give back with it.
func getBuffer() (*[]byte, []byte) {
	bp := bufferPool.Get().(*[]byte)
	return bp, (*bp)[:0]
}

// putBuffer returns b, grown or not, to the pool through its entry bp.
func putBuffer(bp *[]byte, b []byte) {
	if cap(b) > 0 && cap(b) <= 64<<10 {
		*bp = b[:0]
		bufferPool.Put(bp)
	}
}

// The functions below play Lua's part, for Go tests.

func (r *rings) luaPush(kind int, ticket uint64, obj Handle, op string, args []byte, timeoutMs int32) int64 {
	cop := C.CString(op)
	defer C.free(unsafe.Pointer(cop))
	var cargs *C.char
	if len(args) > 0 {
		cargs = (*C.char)(C.CBytes(args))
		defer C.free(unsafe.Pointer(cargs))
	}
	return int64(C.rffi_push(r.s, C.int32_t(kind), C.uint64_t(ticket), C.uint64_t(obj),
		cop, C.size_t(len(op)), cargs, C.size_t(len(args)), C.int32_t(timeoutMs)))
}

func (r *rings) pumpParked() bool { return atomic.LoadInt32(i32(&r.s.pump_parked)) != 0 }

// luaCompletion is a drained completion with its bytes copied out.
type luaCompletion struct {
	Ticket uint64
	Status int
	Level  int
	Data   []byte
}

// luaSpareBlocks is how many submission blocks ring.c keeps for reuse,
// and the most it keeps.
func (r *rings) luaSpareBlocks() (n, max int) {
	return int(r.s.spare_count), C.RFFI_SPARE_BLOCKS
}

// completionBuf is where luaDiscard pops into.
type completionBuf []C.rffi_completion_t

func newCompletionBuf(n int) completionBuf { return make(completionBuf, n) }

// luaDiscard pops up to len(out) completions and drops them, as luaPop
// does without copying them out (for benchmarks: no Go allocation).
func (r *rings) luaDiscard(out completionBuf) int {
	n := int(C.rffi_pop_completions(r.s, &out[0], C.int(len(out))))
	C.rffi_done_completions(r.s)
	return n
}

func (r *rings) luaPop(max int) []luaCompletion {
	out := make([]C.rffi_completion_t, max)
	n := int(C.rffi_pop_completions(r.s, &out[0], C.int(max)))
	res := make([]luaCompletion, n)
	for i := 0; i < n; i++ {
		c := out[i]
		res[i] = luaCompletion{Ticket: uint64(c.ticket), Status: int(c.status), Level: int(c.level),
			Data: C.GoBytes(unsafe.Pointer(c.data), C.int(c.len))}
	}
	C.rffi_done_completions(r.s)
	return res
}
