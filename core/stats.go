package core

import "sync/atomic"

// RuntimeStats are the counters kept for each runtime name.
type RuntimeStats struct {
	Submitted atomic.Uint64
	Completed atomic.Uint64
	Failed    atomic.Uint64 // includes canceled calls
	Canceled  atomic.Uint64
	InFlight  atomic.Int64
	BytesIn   atomic.Uint64
	BytesOut  atomic.Uint64
}

// Stats is what rffi.stats() returns, as a map ready for the codec.
func (e *Engine) Stats() map[string]any {
	e.rings.reclaim()
	rts := map[string]any{}
	e.statsMu.Lock()
	for name, s := range e.runtimes {
		rts[name] = map[string]any{
			"submitted": s.Submitted.Load(),
			"completed": s.Completed.Load(),
			"failed":    s.Failed.Load(),
			"canceled":  s.Canceled.Load(),
			"in_flight": s.InFlight.Load(),
			"bytes_in":  s.BytesIn.Load(),
			"bytes_out": s.BytesOut.Load(),
		}
	}
	e.statsMu.Unlock()
	threads, batchThreads := threadPolicies()
	return map[string]any{
		"runtimes":            rts,
		"in_flight":           e.rings.inFlight(),
		"max_in_flight":       e.cfg.MaxInFlight,
		"submit_queue":        e.rings.sqDepth(),
		"queue_depth":         e.rings.cqDepth(),
		"buffers_allocated":   e.rings.allocs.Load(),
		"buffers_freed":       e.rings.released.Load(),
		"handles":             e.handles.len(),
		"goroutines":          NumGoroutine(),
		"idle_workers":        e.workers.idleWorkers(),
		"logs_dropped":        e.logsDropped.Load(),
		"closing":             e.closing.Load(),
		"doorbell_rings":      e.bell.rings.Load(),
		"pump_wakeups":        e.pumpWakeups.Load(),
		"read_spins":          e.readSpins.Load(),
		"watch_starts":        e.watchStarts.Load(),
		"init_pages_released": e.initPagesReleased.Load(),
		"threads":             threads,
		"batch_threads":       batchThreads,
	}
}
