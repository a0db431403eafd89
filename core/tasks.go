package core

import (
	"context"
	"sync"
)

// A ticket names one submitted task: the slot index in the low 20 bits and
// the slot's generation above them, so a late cancel of a reused slot is a
// no-op. Tickets stay below 2^53 and are exact as Lua numbers.
const (
	slotBits     = 20
	MaxInFlight  = 1 << slotBits
	slotMask     = MaxInFlight - 1
	generationMx = 1<<32 - 1
)

type slot struct {
	gen    uint32
	busy   bool
	cancel context.CancelFunc
}

// taskTable bounds the number of tasks in flight: it is the submit queue.
// A full table is how "busy" is decided, in O(1), without blocking.
type taskTable struct {
	mu    sync.Mutex
	slots []slot
	free  []uint32 // stack of free slot indexes
}

func newTaskTable(size int) *taskTable {
	if size <= 0 || size > MaxInFlight {
		size = MaxInFlight
	}
	t := &taskTable{slots: make([]slot, size), free: make([]uint32, size)}
	for i := range t.free {
		t.free[i] = uint32(size - 1 - i)
	}
	return t
}

// acquire takes a slot for a task whose context is canceled by cancel.
func (t *taskTable) acquire(cancel context.CancelFunc) (uint64, bool) {
	t.mu.Lock()
	n := len(t.free)
	if n == 0 {
		t.mu.Unlock()
		return 0, false
	}
	i := t.free[n-1]
	t.free = t.free[:n-1]
	s := &t.slots[i]
	s.gen = (s.gen + 1) & generationMx
	if s.gen == 0 {
		s.gen = 1 // ticket 0 is reserved for log records
	}
	s.busy = true
	s.cancel = cancel
	ticket := uint64(s.gen)<<slotBits | uint64(i)
	t.mu.Unlock()
	return ticket, true
}

func (t *taskTable) lookup(ticket uint64) *slot {
	i := ticket & slotMask
	if i >= uint64(len(t.slots)) {
		return nil
	}
	s := &t.slots[i]
	if !s.busy || uint64(s.gen) != ticket>>slotBits {
		return nil
	}
	return s
}

func (t *taskTable) release(ticket uint64) {
	t.mu.Lock()
	if s := t.lookup(ticket); s != nil {
		s.busy = false
		s.cancel = nil
		t.free = append(t.free, uint32(ticket&slotMask))
	}
	t.mu.Unlock()
}

// cancel cancels the task's context if the ticket is still live.
func (t *taskTable) cancel(ticket uint64) bool {
	t.mu.Lock()
	var cancel context.CancelFunc
	if s := t.lookup(ticket); s != nil {
		cancel = s.cancel
	}
	t.mu.Unlock()
	if cancel != nil {
		cancel()
		return true
	}
	return false
}

func (t *taskTable) inFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.slots) - len(t.free)
}
