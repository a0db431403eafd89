package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// idleConns returns the sync path's idle leader connections.
func idleConns(p *Producer) []*leaderConn {
	l := p.direct.conns
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*leaderConn
	for _, pc := range l.parts {
		out = append(out, pc.idle...)
	}
	return out
}

// syncSetup makes a topic of parts partitions and a producer (with extra
// options) on the kfake cluster.
func syncSetup(t *testing.T, parts int, extra core.Options) (*Client, string, *Producer) {
	t.Helper()
	needKafka(t)
	c := newClient(t)
	return c, freshTopic(t, c, parts), newProducer(t, extra)
}

// lastOffset is the high-water mark of partition 0.
func lastOffset(t *testing.T, c *Client, topic string) any {
	t.Helper()
	return call(t, c, "offsets", topic).([]any)[0].(map[string]any)["last"]
}

func TestSyncSendConcurrentOnePartition(t *testing.T) {
	c, topic, p := syncSetup(t, 1, nil)
	const senders, each = 32, 25
	var mu sync.Mutex
	var offs []int64
	var wg sync.WaitGroup
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				off, err := p.direct.send(ctx, kgo.Message{Topic: topic, Value: []byte(fmt.Sprint(g, "/", i))})
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				offs = append(offs, off)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// every send has its own offset: the answers were not mixed up
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	for i, o := range offs {
		if o != int64(i) {
			t.Fatalf("offset %d at %d: %v", o, i, offs)
		}
	}
	if n := len(idleConns(p)); n < 1 || n > maxConnsPerPartition {
		t.Fatalf("%d idle connections for one partition, want 1..%d", n, maxConnsPerPartition)
	}
	if last := lastOffset(t, c, topic); last != int64(senders*each) {
		t.Fatalf("last offset %v", last)
	}
}

func TestSyncSendRedialsBrokenConnection(t *testing.T) {
	_, topic, p := syncSetup(t, 1, core.Options{"backoff_min": int64(10)})
	call(t, p, "send", topic, nil, "first")
	idle := idleConns(p)
	if len(idle) != 1 {
		t.Fatalf("%d idle connections after one send", len(idle))
	}
	broken := idle[0]
	broken.Conn.Close() // as a broker restart or an idle close would
	call(t, p, "send", topic, nil, "second")
	for _, ic := range idleConns(p) {
		if ic == broken {
			t.Error("the broken connection is still cached")
		}
	}
	if st := p.stats(); st["sync_sent"] != int64(2) || st["sync_failed"] != int64(0) {
		t.Fatalf("stats %v", st)
	}
}

// A cached leader that lost the partition answers NOT_LEADER: the send
// drops that connection, refreshes the metadata and goes to the leader.
func TestSyncSendFollowsLeader(t *testing.T) {
	_, topic, p := syncSetup(t, 1, core.Options{"backoff_min": int64(10)})
	call(t, p, "send", topic, nil, "first")
	d := p.direct
	d.mu.Lock()
	pi := d.parts[topic]
	right := pi.leaders[0]
	wrong := right
	wrong.ID, wrong.Port = -1, 19092+(right.Port-19092+1)%3
	pi.leaders = map[int]kgo.Broker{0: wrong}
	d.parts[topic] = pi
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	off, err := d.send(ctx, kgo.Message{Topic: topic, Value: []byte("second")})
	if err != nil || off != 1 {
		t.Fatalf("send after a leader move: offset %d, %v", off, err)
	}
	for _, ic := range idleConns(p) {
		if ic.leader != right {
			t.Errorf("a connection to %v (not the leader %v) is cached", ic.leader, right)
		}
	}
}

func TestSyncSendAcksNone(t *testing.T) {
	c, topic, p := syncSetup(t, 1, core.Options{"acks": "none"})
	if p.direct.conns != nil {
		t.Fatal("acks = none must not use leader connections")
	}
	for i := 0; i < 3; i++ {
		call(t, p, "send", topic, nil, fmt.Sprint(i))
	}
	cons := newConsumer(t, c, core.Options{"topic": topic, "partition": int64(0)})
	for i, m := range drain(t, cons, 3) {
		if string(m.Value) != fmt.Sprint(i) {
			t.Fatalf("message %d: %q", i, m.Value)
		}
	}
}

func TestCloseClosesLeaderConnections(t *testing.T) {
	needKafka(t)
	c := newClient(t)
	topic := freshTopic(t, c, 4)
	o, err := NewProducer(core.Options{"brokers": brokers})
	if err != nil {
		t.Fatal(err)
	}
	p := o.(*Producer)
	for i := 0; i < 20; i++ {
		call(t, p, "send", topic, fmt.Sprint("k", i), "v")
	}
	cached := idleConns(p)
	if len(cached) == 0 {
		t.Fatal("no cached connection")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(idleConns(p)); n != 0 {
		t.Fatalf("%d idle connections after close", n)
	}
	for _, lc := range cached {
		lc.SetDeadline(time.Now().Add(time.Second))
		if _, err := lc.WriteMessages(kgo.Message{Value: []byte("x")}); err == nil {
			t.Fatal("a cached connection still works after close")
		}
	}
	if _, err := p.direct.send(ctx, kgo.Message{Topic: topic, Value: []byte("late")}); !errors.Is(err, errClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

// silentBroker accepts connections and never answers.
func silentBroker(t *testing.T) kgo.Broker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return kgo.Broker{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, ID: 7}
}

// A broker that does not answer: the send ends with ctx (deadline or
// cancel), gives its slot back and keeps no connection.
func TestSyncSendBoundedByContext(t *testing.T) {
	b := silentBroker(t)
	d := newDirect(nil, conn{clientID: "t", dialTO: time.Second}.dialer(), kgo.Murmur2Balancer{},
		kgo.RequireAll, 0, 10, time.Millisecond)
	defer d.close()
	d.parts["t"] = partInfo{ids: []int{0}, leaders: map[int]kgo.Broker{0: b}, seen: time.Now().Add(time.Hour)}
	msg := kgo.Message{Topic: "t", Value: []byte("v")}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	start := time.Now()
	_, err := d.send(ctx, msg)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("deadline: %v after %v", err, time.Since(start))
	}

	ctx, cancel = context.WithTimeout(context.Background(), time.Hour)
	time.AfterFunc(200*time.Millisecond, cancel)
	start = time.Now()
	_, err = d.send(ctx, msg)
	if !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Fatalf("cancel: %v after %v", err, time.Since(start))
	}
	for _, pc := range d.conns.parts {
		if len(pc.slots) != 0 || len(pc.idle) != 0 {
			t.Fatalf("after the failed sends: %d slots taken, %d idle", len(pc.slots), len(pc.idle))
		}
	}
}

// SASL on a broker that accepts and then says nothing: the dial ends with
// ctx (kafka-go itself would wait for the SASL answer forever).
func TestLeaderDialBoundedByContext(t *testing.T) {
	b := silentBroker(t)
	o := newOpts("t", map[string]any{"brokers": "127.0.0.1:1",
		"sasl": map[string]any{"user": "u", "password": "p"}})
	cc := o.conn()
	if err := o.finish(); err != nil {
		t.Fatal(err)
	}
	cc.dialTO = time.Hour
	l := newLeaderConns(cc.dialer(), kgo.RequireAll)
	defer l.close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := l.get(ctx, topicPart{"t", 0}, b)
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("dial: %v after %v", err, time.Since(start))
	}
}
