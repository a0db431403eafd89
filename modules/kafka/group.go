package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// group is a consumer group member on kafka-go's ConsumerGroup, which hands
// out generations explicitly. It is used instead of a group Reader because
// a Reader commits through whatever generation is current at commit time:
// a message fetched before a rebalance and committed after it would be
// committed over the new owner's reads, and the new owner would read it
// again. Here every message carries the generation it was fetched in, and
// a commit for an older generation is refused ("rebalanced"): the message
// is delivered again to whoever owns its partition now. Commits that are
// accepted are final: no committed message is read twice.
type group struct {
	cg     *kgo.ConsumerGroup
	rcfg   kgo.ReaderConfig // template for the per-partition readers
	msgs   chan fetched
	stop   context.CancelFunc
	done   chan struct{}
	auto   time.Duration // commit_interval (0: manual)
	logErr func(string, ...any)

	mu     sync.Mutex
	gen    *kgo.Generation
	marked map[string]map[int]int64 // auto-commit: next offsets to commit in gen
	held   *fetched                 // taken from msgs, not returned yet
}

type fetched struct {
	m   kgo.Message
	gen int32
}

func newGroup(gcfg kgo.ConsumerGroupConfig, rcfg kgo.ReaderConfig, queue int, auto time.Duration) (*group, error) {
	cg, err := kgo.NewConsumerGroup(gcfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &group{
		cg: cg, rcfg: rcfg, msgs: make(chan fetched, queue), stop: cancel,
		done: make(chan struct{}), auto: auto,
	}
	go g.run(ctx)
	return g, nil
}

func (g *group) run(ctx context.Context) {
	defer close(g.done)
	defer func() {
		if r := recover(); r != nil {
			core.Logf(core.LevelErr, "kafka consumer: group loop panic: %v", r)
		}
	}()
	for {
		gen, err := g.cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kgo.ErrGroupClosed) {
				return
			}
			core.Logf(core.LevelWarn, "kafka consumer: joining group %s: %v", g.rcfg.GroupID, err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
			continue
		}
		g.mu.Lock()
		g.gen = gen
		g.marked = map[string]map[int]int64{}
		g.mu.Unlock()
		for topic, parts := range gen.Assignments {
			for _, pa := range parts {
				g.startPartition(gen, topic, pa)
			}
		}
		if g.auto > 0 {
			gen.Start(func(ctx context.Context) {
				t := time.NewTicker(g.auto)
				defer t.Stop()
				for {
					select {
					case <-t.C:
						g.commitMarked(gen)
					case <-ctx.Done():
						// last chance, still in this generation
						g.commitMarked(gen)
						return
					}
				}
			})
		}
	}
}

// startPartition reads one assigned partition for as long as the generation
// lasts.
func (g *group) startPartition(gen *kgo.Generation, topic string, pa kgo.PartitionAssignment) {
	gen.Start(func(ctx context.Context) {
		cfg := g.rcfg
		cfg.GroupID, cfg.GroupTopics, cfg.CommitInterval = "", nil, 0
		cfg.Topic, cfg.Partition = topic, pa.ID
		cfg.QueueCapacity = min(cfg.QueueCapacity, 1000)
		r := kgo.NewReader(cfg)
		defer r.Close()
		if err := r.SetOffset(pa.Offset); err != nil {
			core.Logf(core.LevelErr, "kafka consumer: %s[%d]: setting offset %d: %v", topic, pa.ID, pa.Offset, err)
			return
		}
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				if ctx.Err() == nil {
					core.Logf(core.LevelWarn, "kafka consumer: %s[%d]: %v", topic, pa.ID, err)
				}
				return
			}
			select {
			case g.msgs <- fetched{m: m, gen: gen.ID}:
			case <-ctx.Done():
				return
			}
		}
	})
}

// next returns a message of the current generation (older ones are dropped:
// they were not committed, their partition's new owner reads them).
func (g *group) next(ctx context.Context) (kgo.Message, int32, error) {
	g.mu.Lock()
	h := g.held
	g.held = nil
	cur := g.gen
	g.mu.Unlock()
	if h != nil && cur != nil && h.gen == cur.ID {
		return h.m, h.gen, nil
	}
	for {
		select {
		case f := <-g.msgs:
			g.mu.Lock()
			cur := g.gen
			g.mu.Unlock()
			if cur == nil || f.gen != cur.ID {
				continue
			}
			return f.m, f.gen, nil
		case <-ctx.Done():
			return kgo.Message{}, 0, ctx.Err()
		case <-g.done:
			return kgo.Message{}, 0, errClosed
		}
	}
}

// unread puts back a message that belongs to the next batch.
func (g *group) unread(m kgo.Message, gen int32) {
	g.mu.Lock()
	g.held = &fetched{m: m, gen: gen}
	g.mu.Unlock()
}

// mark records fetched offsets for commit_interval commits.
func (g *group) mark(msgs []kgo.Message, gen int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gen == nil || g.gen.ID != gen {
		return
	}
	for _, m := range msgs {
		p := g.marked[m.Topic]
		if p == nil {
			p = map[int]int64{}
			g.marked[m.Topic] = p
		}
		if m.Offset+1 > p[m.Partition] {
			p[m.Partition] = m.Offset + 1
		}
	}
}

func (g *group) commitMarked(gen *kgo.Generation) {
	g.mu.Lock()
	if g.gen != gen || len(g.marked) == 0 {
		g.mu.Unlock()
		return
	}
	offs := g.marked
	g.marked = map[string]map[int]int64{}
	g.mu.Unlock()
	if err := gen.CommitOffsets(offs); err != nil {
		core.Logf(core.LevelWarn, "kafka consumer: committing offsets: %v", err)
	}
}

var errRebalanced = errors.New("rebalanced: the partition was reassigned since this message was fetched; it will be delivered again")

// commit commits offsets (each the last processed offset) fetched in
// generation gen.
func (g *group) commit(offsets map[string]map[int]int64, gen int32) error {
	g.mu.Lock()
	cur := g.gen
	g.mu.Unlock()
	if cur == nil || cur.ID != gen {
		return errRebalanced
	}
	next := make(map[string]map[int]int64, len(offsets))
	for t, ps := range offsets {
		next[t] = make(map[int]int64, len(ps))
		for p, o := range ps {
			next[t][p] = o + 1
		}
	}
	if err := cur.CommitOffsets(next); err != nil {
		var kerr kgo.Error
		if errors.As(err, &kerr) && (kerr == kgo.RebalanceInProgress || kerr == kgo.IllegalGeneration ||
			kerr == kgo.UnknownMemberId) {
			return fmt.Errorf("%w (%v)", errRebalanced, err)
		}
		return err
	}
	return nil
}

func (g *group) close(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		err := g.cg.Close() // ends the generation (commit_interval flushes) and leaves the group
		g.stop()
		<-g.done
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		g.stop()
		return errors.New("kafka consumer: leaving the group did not finish by the deadline")
	}
}
