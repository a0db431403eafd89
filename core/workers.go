package core

import "sync/atomic"

// workerPool runs tasks on goroutines that outlive one call. A goroutine
// started per call pays for its creation and, as soon as the call stack
// outgrows the 2 KiB a new goroutine starts with (decoding, a client
// library, encoding do), for a stack copy; on the echo benchmark those
// were a quarter of the Go side's time. A worker keeps its grown stack.
//
// Only the ring's consumer hands out tasks (the pump, or a watch in its
// place: Engine.startSubmissions). When no worker waits, the task gets a
// new goroutine, which joins the pool when its call is done, so blocking
// calls never wait for a worker. Workers beyond maxIdle exit instead of
// waiting, so a burst of slow calls does not leave thousands behind.
type workerPool struct {
	tasks   chan *task // unbuffered: a send succeeds only if a worker waits
	idle    atomic.Int32
	maxIdle int32
}

func newWorkerPool(maxIdle int) *workerPool {
	return &workerPool{tasks: make(chan *task), maxIdle: int32(maxIdle)}
}

// run starts t on an idle worker, or on a new one.
func (p *workerPool) run(t *task) {
	select {
	case p.tasks <- t:
	default:
		go p.work(t)
	}
}

func (p *workerPool) work(t *task) {
	for {
		t.run()
		if p.idle.Add(1) > p.maxIdle {
			p.idle.Add(-1)
			return
		}
		var ok bool
		t, ok = <-p.tasks
		p.idle.Add(-1)
		if !ok {
			return
		}
	}
}

// stop ends the idle workers; called once the pump has returned, under
// the consumer's mutex, so no watch sends after it.
func (p *workerPool) stop() { close(p.tasks) }

// idleWorkers is reported in stats: goroutines that wait for a call.
func (p *workerPool) idleWorkers() int { return int(p.idle.Load()) }
