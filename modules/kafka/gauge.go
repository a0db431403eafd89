package kafka

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"
)

// A gauge is a few counters a producer shares with Lua through memory, so
// that send_async, which must not wait (it runs in the log phase), can tell
// "buffer full" at once: Lua counts what it handed over, Go counts what it
// finished, and the difference is the buffer level.
//
// Layout, mirrored in lua/resty/ffi/kafka.lua (all float64, so LuaJIT reads
// plain numbers, no boxed int64):
//
//	done      async messages finished: delivered, failed or refused
//	failures  failed messages waiting for Lua to take them ("failures")
//
// resty.ffi.kafka allocates the gauge itself (C memory it never frees) and
// passes its address as the producer's "gauge" option, so that Lua knows it
// without waiting for a reply (a producer may be created in the log phase).
// Without that option (Go callers, tests) a gauge comes from the array
// below.
//
// Gauges live in a package-level array: their addresses never change and
// they are never freed, so a Lua reader can never see freed memory. A
// producer takes a slot for its life; slots are not reused.
type gauge struct {
	done     atomic.Uint64
	failures atomic.Uint64
	_        [6]uint64 // one cache line per producer
}

const maxGauges = 4096

var (
	gauges    [maxGauges]gauge
	gaugeNext atomic.Int64
)

var errNoGauge = errors.New("too many producers in this worker (4096)")

func newGauge() (*gauge, error) {
	i := gaugeNext.Add(1) - 1
	if i >= maxGauges {
		return nil, errNoGauge
	}
	return &gauges[i], nil
}

// checkGaugeAddress refuses an address that is not inside one readable
// and writable private mapping of this process: the option is meant for
// resty.ffi.kafka's own allocation, and a wrong number from a direct
// rffi.open("kafka_producer", ...) must be an error, not a dead worker.
func checkGaugeAddress(addr uintptr) error {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return fmt.Errorf("kafka producer: option \"gauge\": reading /proc/self/maps: %w", err)
	}
	size := unsafe.Sizeof(gauge{})
	for _, line := range strings.Split(string(maps), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || uint64(addr) < start || uint64(addr) >= end {
			continue
		}
		if !strings.HasPrefix(fields[1], "rw") || uint64(addr)+uint64(size) > end || addr%8 != 0 {
			break
		}
		return nil
	}
	return fmt.Errorf("kafka producer: option \"gauge\": %#x is not writable memory of this process"+
		" (the option is set by resty.ffi.kafka)", addr)
}

// gaugeAt views C memory given by address as a gauge. The address is
// reinterpreted through memory rather than converted from uintptr, which
// is what vet's unsafeptr check asks of pointers that Go did not allocate.
func gaugeAt(addr uintptr) *gauge {
	return *(**gauge)(unsafe.Pointer(&addr))
}

// address is what Lua casts to a pointer.
func (g *gauge) address() uint64 { return uint64(uintptr(unsafe.Pointer(g))) }

// raise stores v into slot unless the slot already holds more: counters only
// grow, and two goroutines publishing out of order must not move one back.
func raise(slot *atomic.Uint64, v int64) {
	nv := math.Float64bits(float64(v))
	for {
		old := slot.Load()
		if math.Float64frombits(old) >= float64(v) {
			return
		}
		if slot.CompareAndSwap(old, nv) {
			return
		}
	}
}

// set stores v (for values that go down as well as up, published under the
// owner's lock).
func set(slot *atomic.Uint64, v int64) { slot.Store(math.Float64bits(float64(v))) }

func mathFloat(bits uint64) float64 { return math.Float64frombits(bits) }
