package kafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	kgo "github.com/segmentio/kafka-go"
)

// direct is the sync send path: one message, one Produce request, written
// and answered on a connection to the partition's leader that the sending
// goroutine holds for the round trip (leaderConns). No batching stage, no
// writer goroutines: a lone message goes out at once, and sequential sends
// pay one broker round trip each.
//
// It used to be kgo.Client.Produce on the producer's shared Transport,
// whose round trip hands the request from the caller to the connection
// pool's goroutines and the answer back; a kgo.Conn writes and reads in
// the caller's goroutine. Measured on the kfake cluster, 10k sequential
// 200-byte acks=all sends from a plain Go program: about 5300 msg/s with
// Client.Produce, about 8300 on a Conn. In an nginx worker (one P, so the
// hand-offs cost less) the Conn alone gained little: the cost there is
// thread wake-ups (4.7 context switches per send), and each plain read or
// write on the socket woke Go's sysmon thread. With the socket read and
// written by raw system calls (core.RawIO): 2.6 per send, worker CPU per send
// from about 145 to 110 µs, about 4700 to 5400 msg/s (the sync bench,
// bench/kafka/run.sh).
//
// What stays on the Transport: metadata (the partition list and leaders
// come from its cache, refreshed every few seconds), and acks = "none",
// which a Conn cannot send (SetRequiredAcks takes -1 or 1, and every write
// waits for an answer that a broker never sends for acks=0).
type direct struct {
	client   *kgo.Client
	conns    *leaderConns // nil with acks = none: Client.Produce then
	balancer kgo.Balancer
	acks     kgo.RequiredAcks
	comp     kgo.Compression
	attempts int
	backoff  time.Duration

	mu    sync.Mutex
	parts map[string]partInfo // partition lists, refreshed every few seconds
}

type partInfo struct {
	ids     []int
	leaders map[int]kgo.Broker
	seen    time.Time
}

const partsTTL = 5 * time.Second

func newDirect(client *kgo.Client, dialer *kgo.Dialer, bal kgo.Balancer, acks kgo.RequiredAcks,
	comp kgo.Compression, attempts int, backoff time.Duration) *direct {
	d := &direct{client: client, balancer: bal, acks: acks, comp: comp, attempts: attempts, backoff: backoff,
		parts: map[string]partInfo{}}
	if acks != kgo.RequireNone {
		d.conns = newLeaderConns(dialer, acks)
	}
	return d
}

// close closes the cached leader connections (Producer.Close).
func (d *direct) close() {
	if d.conns != nil {
		d.conns.close()
	}
}

func (d *direct) partitions(ctx context.Context, topic string) (partInfo, error) {
	d.mu.Lock()
	pi, ok := d.parts[topic]
	d.mu.Unlock()
	if ok && time.Since(pi.seen) < partsTTL {
		return pi, nil
	}
	// served from the Transport's metadata cache when it has the topic
	md, err := d.client.Metadata(ctx, &kgo.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return partInfo{}, err
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return partInfo{}, t.Error
		}
		if len(t.Partitions) == 0 {
			return partInfo{}, kgo.UnknownTopicOrPartition
		}
		pi = partInfo{ids: make([]int, len(t.Partitions)), leaders: make(map[int]kgo.Broker, len(t.Partitions)),
			seen: time.Now()}
		for i, p := range t.Partitions {
			pi.ids[i] = p.ID
			pi.leaders[p.ID] = p.Leader
		}
		sortInts(pi.ids)
		d.mu.Lock()
		d.parts[topic] = pi
		d.mu.Unlock()
		return pi, nil
	}
	return partInfo{}, kgo.UnknownTopicOrPartition
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// send writes msg and returns its offset, retrying what may succeed later
// until attempts or ctx run out.
func (d *direct) send(ctx context.Context, msg kgo.Message) (int64, error) {
	var err error
	for attempt := 0; attempt < d.attempts; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(d.backoff << min(attempt-1, 4)):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			d.mu.Lock()
			delete(d.parts, msg.Topic) // leadership may have moved
			d.mu.Unlock()
		}
		var pi partInfo
		if pi, err = d.partitions(ctx, msg.Topic); err != nil {
			if !retriable(err) || ctx.Err() != nil {
				return 0, err
			}
			continue
		}
		part := d.balancer.Balance(msg, pi.ids...)
		var off int64
		if d.conns == nil {
			off, err = d.produce(ctx, part, msg)
		} else {
			off, err = d.write(ctx, topicPart{msg.Topic, part}, pi.leaders[part], msg)
		}
		if err == nil {
			return off, nil
		}
		if cerr := ctxErr(ctx, err); cerr != nil {
			return 0, cerr
		}
		if !retriable(err) {
			return 0, err
		}
	}
	return 0, err
}

// write sends msg on a connection to the partition's leader, with ctx's
// deadline on the write and the read, and cut short if ctx is canceled.
func (d *direct) write(ctx context.Context, tp topicPart, leader kgo.Broker, msg kgo.Message) (int64, error) {
	c, err := d.conns.get(ctx, tp, leader)
	if err != nil {
		return 0, err
	}
	dl, _ := ctx.Deadline() // zero (none) without one
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	_, _, off, _, err := c.WriteCompressedMessagesAt(d.comp.Codec(),
		kgo.Message{Key: msg.Key, Value: msg.Value, Headers: msg.Headers, Time: time.Now()})
	// a canceled ctx may have moved the deadline under the next user
	d.conns.put(c, stop() && err == nil)
	if err != nil {
		return 0, fmt.Errorf("producing to %s/%d on broker %d: %w", tp.topic, tp.id, c.leader.ID, err)
	}
	return off, nil
}

// produce sends msg with one Produce request through the Transport (acks =
// none).
func (d *direct) produce(ctx context.Context, part int, msg kgo.Message) (int64, error) {
	res, err := d.client.Produce(ctx, &kgo.ProduceRequest{
		Topic: msg.Topic, Partition: part, RequiredAcks: d.acks, Compression: d.comp,
		Records: kgo.NewRecordReader(kgo.Record{
			Time: time.Now(), Key: bytesOrNil(msg.Key), Value: bytesOrNil(msg.Value), Headers: msg.Headers,
		}),
	})
	switch {
	case err != nil:
		return 0, err
	case res == nil:
		// what Produce returns for acks = none: no answer, so no offset
		return -1, nil
	case res.Error != nil:
		return 0, res.Error
	}
	return res.BaseOffset, nil
}

// ctxErr returns ctx's error when err is its doing: ctx is done, or err is
// a connection deadline that ctx's deadline set and that struck first.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) && errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return nil
}

func bytesOrNil(b []byte) kgo.Bytes {
	if b == nil {
		return nil
	}
	return kgo.NewBytes(b)
}
