package core

import (
	"runtime"
	"testing"
	"time"
)

func TestWorkerPoolKeepsAtMostMaxIdle(t *testing.T) {
	e := newTestEngine(t, Config{})
	h := openFake(t, e)
	before := runtime.NumGoroutine()
	// 200 slow calls at once need 200 goroutines; afterwards only
	// idleWorkers of them may stay.
	const n = 200
	for i := uint64(1); i <= n; i++ {
		if rc := e.rings.luaPush(kindCall, i, h, "sleep", args(t, int64(50)), 0); rc < 0 {
			t.Fatalf("push %d: %d", i, rc)
		}
	}
	for i := uint64(1); i <= n; i++ {
		await(t, e, i)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && runtime.NumGoroutine() > before+idleWorkers {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before+idleWorkers {
		t.Fatalf("%d goroutines after the calls, want at most %d", got, before+idleWorkers)
	}
	if idle := e.workers.idleWorkers(); idle != idleWorkers {
		t.Fatalf("idle workers %d, want %d", idle, idleWorkers)
	}
	// an idle worker takes the next call
	if rc := e.rings.luaPush(kindCall, n+1, h, "echo", args(t, "again"), 0); rc < 0 {
		t.Fatalf("push: %d", rc)
	}
	await(t, e, n+1)
}

func TestWorkerPoolStopsWithTheEngine(t *testing.T) {
	before := runtime.NumGoroutine()
	e, err := NewEngine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := e.Open("fake", nil)
	for i := uint64(1); i <= 10; i++ {
		e.rings.luaPush(kindCall, i, h, "echo", args(t, "x"), 0)
	}
	for i := uint64(1); i <= 10; i++ {
		await(t, e, i)
	}
	e.Shutdown(time.Second)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && runtime.NumGoroutine() > before {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before {
		t.Fatalf("%d goroutines after shutdown, %d before", got, before)
	}
}
