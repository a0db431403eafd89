package core

import (
	"math"
	"strings"
	"testing"
	"time"
)

// FuzzParseConfig feeds resty.ffi.configure tables to the parser rffi_init
// uses. A table it accepts must, once defaults are applied, give sizes the
// rings can be built with and a shutdown timeout the C side can hold.
func FuzzParseConfig(f *testing.F) {
	for _, m := range []map[string]any{
		{},
		{"max_in_flight": int64(16384), "max_payload": int64(64 << 20), "socket_dir": "/tmp", "path": "/x/resty_ffi_go.so"},
		{"max_pending_logs": int64(4096), "pump_spins": int64(1), "pump_spin_us": int64(0), "go_max_procs": int64(2), "go_gc_percent": int64(200), "shutdown_timeout": int64(5000), "release_init_pages": false},
		{"max_in_flight": int64(1 << 20), "max_pending_logs": int64(1 << 20), "shutdown_timeout": int64(math.MaxInt32)},
		{"max_in_flight": int64(-1)},
		{"max_payload": 1.5},
		{"shutdown_timeout": int64(1 << 40)},
		{"colour": "red"},
	} {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := DecodeOptions(frame)
		if err != nil {
			return
		}
		c, err := parseConfig(m)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "configuration: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		c.setDefaults()
		checkConfig(t, c)
	})
}

func checkConfig(t *testing.T, c Config) {
	t.Helper()
	within := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			t.Fatalf("%s = %d, outside [%d, %d] (config %+v)", name, v, lo, hi, c)
		}
	}
	within("MaxInFlight", c.MaxInFlight, 1, 1<<20)
	within("MaxPayload", c.MaxPayload, 1, 1<<40)
	within("MaxPendingLogs", c.MaxPendingLogs, 1, 1<<20)
	within("PumpSpins", c.PumpSpins, 1, 1<<16)
	within("GoMaxProcs", c.GoMaxProcs, 1, 1024)
	within("GCPercent", c.GCPercent, 1, 100000)
	within("PumpSpinAfterReply (us)", int(c.PumpSpinAfterReply/time.Microsecond), 0, 1000000)
	// the completion ring holds both and its mask is a uint32
	within("completion ring", nextPow2(c.MaxInFlight+c.MaxPendingLogs), 1, math.MaxUint32)
	if c.ShutdownTimeout <= 0 || c.ShutdownTimeout/time.Millisecond > math.MaxInt32 ||
		c.ShutdownTimeout%time.Millisecond != 0 {
		t.Fatalf("ShutdownTimeout %v cannot be handed to C as int32 milliseconds", c.ShutdownTimeout)
	}
}
