package kafka

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// leaderConns keeps connections to partition leaders for the sync send
// path (direct), a few per (topic, partition), each used by one send at a
// time.
//
// kafka-go documents a *kgo.Conn as safe for concurrent use, and its
// buffers are (one lock for writes, one for reads, answers matched by
// correlation id), but what a send needs is not: deadlines belong to the
// connection, not to a call (SetDeadline moves the deadline of every
// pending request), an error on one request closes the socket under all
// the others, and a goroutine whose answer is not next in line takes and
// drops the read lock in a loop until it is. So a send holds a connection
// alone for its round trip: get hands out an idle one, or dials one while
// fewer than maxConnsPerPartition are in use, or waits for one. Brokers
// answer the requests of one connection one at a time anyway, so
// pipelining on one connection would not serve concurrent sends sooner.
//
// A connection that fails is closed, never reused: it may be half-written,
// its broker may have gone or lost the leadership. Idle ones are closed
// after connIdleTimeout (before the broker's own idle close, so a send
// rarely meets a dead one), or when the metadata names another leader.
type leaderConns struct {
	dialer *kgo.Dialer
	acks   int

	mu     sync.Mutex
	parts  map[topicPart]*partConns // never shrinks: a few bytes per partition ever written
	closed bool
	swept  time.Time
}

const (
	maxConnsPerPartition = 4
	connIdleTimeout      = 60 * time.Second // as the Transport's IdleTimeout
)

type topicPart struct {
	topic string
	id    int
}

type partConns struct {
	slots chan struct{} // a token per connection in use or being dialed
	idle  []*leaderConn // most recently used last
}

type leaderConn struct {
	*kgo.Conn
	pc     *partConns
	leader kgo.Broker
	used   time.Time
}

func newLeaderConns(d *kgo.Dialer, acks kgo.RequiredAcks) *leaderConns {
	return &leaderConns{dialer: d, acks: int(acks), parts: map[topicPart]*partConns{}, swept: time.Now()}
}

// get returns a connection to leader for tp, for the caller alone until
// it calls put.
func (l *leaderConns) get(ctx context.Context, tp topicPart, leader kgo.Broker) (*leaderConn, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errClosed
	}
	pc := l.parts[tp]
	if pc == nil {
		pc = &partConns{slots: make(chan struct{}, maxConnsPerPartition)}
		l.parts[tp] = pc
	}
	l.mu.Unlock()
	select {
	case pc.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var stale []*leaderConn
	var c *leaderConn
	l.mu.Lock()
	for c == nil && len(pc.idle) > 0 {
		last := pc.idle[len(pc.idle)-1]
		pc.idle = pc.idle[:len(pc.idle)-1]
		if last.leader == leader && time.Since(last.used) < connIdleTimeout {
			c = last
		} else {
			stale = append(stale, last)
		}
	}
	l.mu.Unlock()
	closeAll(stale)
	if c != nil {
		return c, nil
	}
	c, err := l.dial(ctx, pc, tp, leader)
	if err != nil {
		<-pc.slots
		return nil, err
	}
	return c, nil
}

// put gives c back: kept for the next send when it served this one
// without error, closed otherwise.
func (l *leaderConns) put(c *leaderConn, healthy bool) {
	now := time.Now()
	var stale []*leaderConn
	l.mu.Lock()
	keep := healthy && !l.closed
	if keep {
		c.used = now
		c.pc.idle = append(c.pc.idle, c)
		if now.Sub(l.swept) > connIdleTimeout {
			// partitions no longer written keep no connection open
			l.swept = now
			stale = l.takeIdleLocked(now.Add(-connIdleTimeout))
		}
	}
	l.mu.Unlock()
	<-c.pc.slots
	if !keep {
		c.Close()
	}
	closeAll(stale)
}

// takeIdleLocked removes the idle connections last used before cutoff
// and returns them.
func (l *leaderConns) takeIdleLocked(cutoff time.Time) []*leaderConn {
	var out []*leaderConn
	for _, pc := range l.parts {
		kept := pc.idle[:0]
		for _, c := range pc.idle {
			if c.used.Before(cutoff) {
				out = append(out, c)
			} else {
				kept = append(kept, c)
			}
		}
		clear(pc.idle[len(kept):])
		pc.idle = kept
	}
	return out
}

// close closes the idle connections; those in use are closed as they come
// back, and get refuses from now on.
func (l *leaderConns) close() {
	l.mu.Lock()
	l.closed = true
	all := l.takeIdleLocked(time.Now().Add(time.Hour))
	l.mu.Unlock()
	closeAll(all)
}

func closeAll(cs []*leaderConn) {
	for _, c := range cs {
		c.Close()
	}
}

// dial connects to the leader of tp with the producer's dialer (client_id,
// tls, sasl, connect_timeout). kafka-go bounds the TCP connect and the TLS
// handshake by ctx but not the SASL exchange that follows, so the socket
// is closed if ctx ends before the dial returns.
func (l *leaderConns) dial(ctx context.Context, pc *partConns, tp topicPart, leader kgo.Broker) (*leaderConn, error) {
	if leader.Host == "" {
		// the metadata knows no live leader for it
		return nil, fmt.Errorf("partition %s/%d: %w", tp.topic, tp.id, kgo.LeaderNotAvailable)
	}
	var (
		mu     sync.Mutex
		raw    net.Conn
		killed bool
	)
	d := *l.dialer
	d.DialFunc = func(dctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if killed {
			c.Close()
			return nil, ctx.Err()
		}
		raw = c
		return core.RawIO(c), nil
	}
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		killed = true
		if raw != nil {
			raw.Close()
		}
		mu.Unlock()
	})
	kc, err := d.DialPartition(ctx, "tcp", "", kgo.Partition{Topic: tp.topic, ID: tp.id, Leader: leader})
	if !stop() && err == nil {
		kc.Close()
		err = ctx.Err()
	}
	if err == nil {
		err = kc.SetRequiredAcks(l.acks)
		if err != nil {
			kc.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to broker %d (%s:%d), leader of %s/%d: %w",
			leader.ID, leader.Host, leader.Port, tp.topic, tp.id, err)
	}
	return &leaderConn{Conn: kc, pc: pc, leader: leader}, nil
}
