package kafka

import (
	"context"
	"sync"
	"time"

	kgo "github.com/segmentio/kafka-go"
)

// direct sends one message with a single Produce request on the shared
// Transport: no batching stage, no writer goroutines between the caller and
// the connection. This is the sync send path: a lone message goes out at
// once, and sequential sends pay one broker round trip each.
type direct struct {
	client   *kgo.Client
	balancer kgo.Balancer
	acks     kgo.RequiredAcks
	comp     kgo.Compression
	attempts int
	backoff  time.Duration

	mu    sync.Mutex
	parts map[string]partInfo // partition lists, refreshed every few seconds
}

type partInfo struct {
	ids  []int
	seen time.Time
}

const partsTTL = 5 * time.Second

func (d *direct) partitions(ctx context.Context, topic string) ([]int, error) {
	d.mu.Lock()
	pi, ok := d.parts[topic]
	d.mu.Unlock()
	if ok && time.Since(pi.seen) < partsTTL {
		return pi.ids, nil
	}
	// served from the Transport's metadata cache when it has the topic
	md, err := d.client.Metadata(ctx, &kgo.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, t.Error
		}
		ids := make([]int, len(t.Partitions))
		for i, p := range t.Partitions {
			ids[i] = p.ID
		}
		if len(ids) == 0 {
			return nil, kgo.UnknownTopicOrPartition
		}
		sortInts(ids)
		d.mu.Lock()
		d.parts[topic] = partInfo{ids: ids, seen: time.Now()}
		d.mu.Unlock()
		return ids, nil
	}
	return nil, kgo.UnknownTopicOrPartition
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
		var ids []int
		if ids, err = d.partitions(ctx, msg.Topic); err != nil {
			if !retriable(err) || ctx.Err() != nil {
				return 0, err
			}
			continue
		}
		part := d.balancer.Balance(msg, ids...)
		var res *kgo.ProduceResponse
		res, err = d.client.Produce(ctx, &kgo.ProduceRequest{
			Topic: msg.Topic, Partition: part, RequiredAcks: d.acks, Compression: d.comp,
			Records: kgo.NewRecordReader(kgo.Record{
				Time: time.Now(), Key: bytesOrNil(msg.Key), Value: bytesOrNil(msg.Value), Headers: msg.Headers,
			}),
		})
		if err == nil && res.Error != nil {
			err = res.Error
		}
		if err == nil {
			return res.BaseOffset, nil
		}
		if ctx.Err() != nil || !retriable(err) {
			return 0, err
		}
	}
	return 0, err
}

func bytesOrNil(b []byte) kgo.Bytes {
	if b == nil {
		return nil
	}
	return kgo.NewBytes(b)
}
