package core

/*
#include <stdlib.h>
#include "rffi.h"

void rffi_register_at_exit(int32_t timeout_ms);
size_t rffi_release_init_pages(void);
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
	"unsafe"
)

// The exported functions below are the whole C ABI (see rffi.h). They are
// called by LuaJIT on the nginx worker's thread, so none of them blocks
// except rffi_shutdown, which the worker calls while exiting.

func bytesOf(p *C.char, n C.size_t) []byte {
	if p == nil || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

// writeErr copies msg into the caller's buffer, NUL-terminated, truncated.
func writeErr(buf *C.char, size C.size_t, msg string) {
	if buf == nil || size == 0 {
		return
	}
	out := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(size))
	n := copy(out[:len(out)-1], msg)
	out[n] = 0
}

var errNotStarted = errors.New("the Go runtime is not initialized (call rffi_init first)")

//export rffi_init
func rffi_init(cfg *C.char, cfgLen C.size_t, errBuf *C.char, errLen C.size_t) *C.rffi_shared_t {
	if e := current.Load(); e != nil {
		return (*C.rffi_shared_t)(e.rings.sharedPtr())
	}
	var c Config
	if frame := bytesOf(cfg, cfgLen); len(frame) > 0 {
		m, err := DecodeOptions(frame)
		if err != nil {
			writeErr(errBuf, errLen, "configuration: "+err.Error())
			return nil
		}
		if c, err = parseConfig(m); err != nil {
			writeErr(errBuf, errLen, err.Error())
			return nil
		}
	}
	e, err := NewEngine(c)
	if err != nil {
		writeErr(errBuf, errLen, err.Error())
		return nil
	}
	if !current.CompareAndSwap(nil, e) {
		e = current.Load()
	} else {
		C.rffi_register_at_exit(C.int32_t(e.cfg.ShutdownTimeout / time.Millisecond))
		if !c.KeepInitPages {
			// Every package initializer has run by now (an exported
			// function waits for them), so what loading touched can go.
			e.initPagesReleased.Store(uint64(C.rffi_release_init_pages()))
		}
	}
	return (*C.rffi_shared_t)(e.rings.sharedPtr())
}

// luaOwner is the token of the Lua VM the engine serves (rffi_attach).
var luaOwner atomic.Uintptr

// rffi_attach ties this process's engine to one Lua VM: the completion
// ring has one reader, and tickets are numbered per VM. The first VM to
// attach owns it for good; any other gets an error. A second VM appears
// with lua_code_cache off (nginx-lua then runs every request in a VM of
// its own), where completions would reach the wrong VM's dispatcher and
// calls would hang until their timeout.
//
//export rffi_attach
func rffi_attach(token unsafe.Pointer, errBuf *C.char, errLen C.size_t) C.int {
	t := uintptr(token)
	if luaOwner.CompareAndSwap(0, t) || luaOwner.Load() == t {
		return 0
	}
	writeErr(errBuf, errLen, "this worker's Go runtime already serves another Lua VM;"+
		" lua_code_cache off (a Lua VM per request) is not supported: turn it on"+
		" and reload nginx to pick up Lua changes")
	return -1
}

func parseConfig(m map[string]any) (c Config, err error) {
	var shutdownMs int
	defer func() { c.ShutdownTimeout = time.Duration(shutdownMs) * time.Millisecond }()
	// Each bound is what the value is used for can take: the completion
	// ring (max_in_flight + max_pending_logs slots, a uint32 mask), the
	// int32 milliseconds rffi_register_at_exit gets, the runtime's limit
	// on GOMAXPROCS; pump_spins beyond it would keep the pump from ever
	// sleeping.
	ints := map[string]struct {
		p   *int
		max int
	}{
		"max_in_flight":    {&c.MaxInFlight, 1 << 20},
		"max_payload":      {&c.MaxPayload, 1 << 40},
		"max_pending_logs": {&c.MaxPendingLogs, 1 << 20},
		"pump_spins":       {&c.PumpSpins, 1 << 16},
		"go_max_procs":     {&c.GoMaxProcs, 1024},
		"go_gc_percent":    {&c.GCPercent, 100000},
		"shutdown_timeout": {&shutdownMs, math.MaxInt32},
	}
	for k, v := range m {
		if o, ok := ints[k]; ok {
			n, ok := v.(int64)
			if !ok || n <= 0 || n > int64(o.max) {
				return c, fmt.Errorf("configuration: %s must be a positive integer up to %d, got %v", k, o.max, v)
			}
			*o.p = int(n)
			continue
		}
		switch k {
		case "socket_dir":
			s, ok := v.(string)
			if !ok {
				return c, fmt.Errorf("configuration: socket_dir must be a string, got %T", v)
			}
			c.SocketDir = s
		case "pump_spin_us":
			n, ok := v.(int64)
			if !ok || n < 0 || n > 1000000 {
				return c, fmt.Errorf("configuration: pump_spin_us must be an integer from 0 to 1000000, got %v", v)
			}
			c.PumpSpinAfterReply = time.Duration(n) * time.Microsecond
			if n == 0 {
				c.PumpSpinAfterReply = -1 // off; a zero Config field means the default
			}
		case "release_init_pages":
			b, ok := v.(bool)
			if !ok {
				return c, fmt.Errorf("configuration: release_init_pages must be a boolean, got %T", v)
			}
			c.KeepInitPages = !b
		case "path":
			// used by the Lua loader only
		default:
			return c, fmt.Errorf("configuration: unknown option %q", k)
		}
	}
	return c, nil
}

//export rffi_listen
func rffi_listen(pathBuf *C.char, pathLen C.size_t, errBuf *C.char, errLen C.size_t) C.int {
	e := current.Load()
	if e == nil {
		writeErr(errBuf, errLen, errNotStarted.Error())
		return -1
	}
	path, err := e.Listen()
	if err != nil {
		writeErr(errBuf, errLen, err.Error())
		return -1
	}
	if int(pathLen) <= len(path) {
		writeErr(errBuf, errLen, "doorbell path too long: "+path)
		return -1
	}
	writeErr(pathBuf, pathLen, path)
	return 0
}

//export rffi_open
func rffi_open(name *C.char, nameLen C.size_t, opts *C.char, optsLen C.size_t, errBuf *C.char, errLen C.size_t) C.int64_t {
	e := current.Load()
	if e == nil {
		writeErr(errBuf, errLen, errNotStarted.Error())
		return -1
	}
	h, err := e.Open(string(bytesOf(name, nameLen)), bytesOf(opts, optsLen))
	if err != nil {
		writeErr(errBuf, errLen, err.Error())
		return -1
	}
	return C.int64_t(h)
}

// rffi_cancel and rffi_close are the slow path, for when the submission
// ring is full; normally Lua pushes RFFI_CANCEL / RFFI_CLOSE records.
//
//export rffi_cancel
func rffi_cancel(ticket C.uint64_t) C.int {
	if e := current.Load(); e != nil {
		e.cancelCall(uint64(ticket))
		return 1
	}
	return 0
}

//export rffi_close
func rffi_close(h C.uint64_t) C.int {
	if e := current.Load(); e != nil && e.CloseHandle(Handle(h)) {
		return 1
	}
	return 0
}

//export rffi_stats
func rffi_stats(out **C.char, outLen *C.size_t) C.int {
	e := current.Load()
	if e == nil {
		return -1
	}
	b, err := Encode(e.Stats())
	if err != nil {
		return -1
	}
	// A plain malloc'd copy the caller frees: stats are not on the hot path.
	*out, *outLen = (*C.char)(C.CBytes(b)), C.size_t(len(b))
	return 0
}

//export rffi_shutdown
func rffi_shutdown(timeoutMs C.int32_t, errBuf *C.char, errLen C.size_t) C.int {
	e := current.Load()
	if e == nil {
		return 0
	}
	if err := e.Shutdown(time.Duration(timeoutMs) * time.Millisecond); err != nil {
		writeErr(errBuf, errLen, err.Error())
		return -1
	}
	return 0
}

// rffi_wake rings the doorbell unconditionally, so a dispatcher asleep on
// its socket wakes up (the worker is exiting and it must notice).
//
//export rffi_wake
func rffi_wake() {
	if e := current.Load(); e != nil {
		e.bell.ring()
	}
}
