package core

import (
	"sync"
	"unsafe"
)

// Completion status values, mirrored in resty/ffi.lua.
const (
	StatusOK    = 0
	StatusError = 1
	StatusLog   = 2
)

// completion is one finished task or one log record. data points to a
// buffer from C.malloc; ownership passes to Lua when it is drained.
type completion struct {
	ticket uint64
	status int32
	level  int32
	data   unsafe.Pointer
	size   int
}

// completionQueue is a mutex-protected FIFO plus the "armed" flag that
// makes doorbell rings coalesce: the dispatcher arms it when it finds the
// queue empty, and only the push that finds it armed rings.
type completionQueue struct {
	mu    sync.Mutex
	items []completion
	head  int
	armed bool
	logs  int // log records waiting, bounded separately
}

// push appends c and reports whether the doorbell must ring.
func (q *completionQueue) push(c completion) (ring bool) {
	q.mu.Lock()
	q.items = append(q.items, c)
	if c.status == StatusLog {
		q.logs++
	}
	ring = q.armed
	q.armed = false
	q.mu.Unlock()
	return ring
}

// pushLog appends a log record unless maxLogs are already waiting.
func (q *completionQueue) pushLog(c completion, maxLogs int) (accepted, ring bool) {
	q.mu.Lock()
	if q.logs >= maxLogs {
		q.mu.Unlock()
		return false, false
	}
	q.items = append(q.items, c)
	q.logs++
	ring = q.armed
	q.armed = false
	q.mu.Unlock()
	return true, ring
}

// drain moves up to len(out) completions into out, oldest first. When it
// leaves the queue empty and arm is set, the next push rings the doorbell.
func (q *completionQueue) drain(out []completion, arm bool) int {
	q.mu.Lock()
	n := copy(out, q.items[q.head:])
	for i := 0; i < n; i++ {
		if out[i].status == StatusLog {
			q.logs--
		}
		q.items[q.head+i] = completion{}
	}
	q.head += n
	if q.head == len(q.items) {
		q.items = q.items[:0]
		q.head = 0
	} else if q.head > 1024 && q.head*2 > len(q.items) {
		// Compact so a long-lived backlog does not pin a growing array.
		rest := copy(q.items, q.items[q.head:])
		q.items = q.items[:rest]
		q.head = 0
	}
	// Armed only once the queue is empty, so a dispatcher that got fewer
	// than it asked for knows it may sleep: the next push will ring.
	if arm && q.head == len(q.items) {
		q.armed = true
	}
	q.mu.Unlock()
	return n
}

func (q *completionQueue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// takeAll empties the queue (shutdown: the buffers are freed by the caller).
func (q *completionQueue) takeAll() []completion {
	q.mu.Lock()
	defer q.mu.Unlock()
	rest := append([]completion(nil), q.items[q.head:]...)
	q.items, q.head, q.logs = nil, 0, 0
	return rest
}
