package core

/*
#include <stdlib.h>
#include <string.h>
#include "rffi.h"
*/
import "C"

import (
	"sync/atomic"
	"unsafe"
)

// cBuffers counts the buffers Go hands to Lua: allocated here, freed by Lua
// with free() (or by Go when nobody will ever drain them).
type cBuffers struct {
	allocated atomic.Uint64
	goFreed   atomic.Uint64 // freed on the Go side (shutdown leftovers)
	shared    *C.rffi_shared_t
}

func newCBuffers() *cBuffers {
	return &cBuffers{shared: (*C.rffi_shared_t)(C.calloc(1, C.sizeof_rffi_shared_t))}
}

// alloc copies b into a new C buffer. A zero-length result still gets a
// buffer of one byte so every completion has exactly one owner to free.
func (c *cBuffers) alloc(b []byte) (unsafe.Pointer, int) {
	n := len(b)
	p := C.malloc(C.size_t(max(n, 1)))
	if n > 0 {
		C.memcpy(p, unsafe.Pointer(&b[0]), C.size_t(n))
	}
	c.allocated.Add(1)
	return p, n
}

func (c *cBuffers) free(p unsafe.Pointer) {
	if p != nil {
		C.free(p)
		c.goFreed.Add(1)
	}
}

// freed is the total freed by either side.
func (c *cBuffers) freed() uint64 {
	lua := atomic.LoadUint64((*uint64)(unsafe.Pointer(&c.shared.buffers_freed)))
	return lua + c.goFreed.Load()
}

func (c *cBuffers) sharedPtr() unsafe.Pointer { return unsafe.Pointer(c.shared) }

// luaFreed simulates Lua's side of the protocol, for tests.
func (c *cBuffers) luaFree(p unsafe.Pointer) {
	C.free(p)
	atomic.AddUint64((*uint64)(unsafe.Pointer(&c.shared.buffers_freed)), 1)
}
