// Package kafka is the resty.ffi.kafka runtime: producers and consumers on
// github.com/segmentio/kafka-go, plus a few admin calls.
//
// Two runtimes are registered:
//
//	"kafka_producer"  one Producer per options table (rffi.open caches it
//	                  per worker, so every request shares it)
//	"kafka"           a client for admin calls; its "consumer" operation
//	                  returns a Consumer handle (never shared: each is a
//	                  group member of its own)
package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

func init() {
	core.Register("kafka_producer", NewProducer)
	core.Register("kafka", NewClient)
}

// Client serves admin calls and makes consumers.
type Client struct {
	conn      conn
	transport *kgo.Transport
	client    *kgo.Client
}

// NewClient reads the connection options (brokers, client_id, tls, sasl,
// connect_timeout, request_timeout).
func NewClient(m core.Options) (core.Object, error) {
	o := newOpts("kafka", m)
	c := o.conn()
	timeout := o.ms("request_timeout", 10*time.Second, time.Millisecond)
	if err := o.finish(); err != nil {
		return nil, err
	}
	t := c.transport()
	return &Client{conn: c, transport: t, client: &kgo.Client{Addr: c.addr(), Transport: t, Timeout: timeout}}, nil
}

// Call serves the admin operations and "consumer".
func (c *Client) Call(ctx context.Context, op string, args []any) (any, error) {
	switch op {
	case "consumer":
		var m map[string]any
		if len(args) > 0 {
			m, _ = args[0].(map[string]any)
		}
		if m == nil {
			return nil, errors.New("kafka.consumer: an options table expected")
		}
		return NewConsumer(m)
	case "create_topic":
		return c.createTopic(ctx, args)
	case "delete_topic":
		topic, err := topicArg(args)
		if err != nil {
			return nil, err
		}
		res, err := c.client.DeleteTopics(ctx, &kgo.DeleteTopicsRequest{Topics: []string{topic}})
		if err == nil {
			err = res.Errors[topic]
		}
		if err != nil {
			return nil, fmt.Errorf("kafka delete_topic %s: %w", topic, err)
		}
		return true, nil
	case "list_topics":
		md, err := c.client.Metadata(ctx, &kgo.MetadataRequest{})
		if err != nil {
			return nil, fmt.Errorf("kafka list_topics: %w", err)
		}
		names := make([]string, 0, len(md.Topics))
		for _, t := range md.Topics {
			if !t.Internal {
				names = append(names, t.Name)
			}
		}
		sort.Strings(names)
		return names, nil
	case "partitions":
		return c.partitions(ctx, args)
	case "offsets":
		return c.offsets(ctx, args)
	}
	return nil, core.UnknownOp("kafka", op)
}

func topicArg(args []any) (string, error) {
	if len(args) == 0 {
		return "", errors.New("kafka: a topic name expected")
	}
	t, ok := args[0].(string)
	if !ok || t == "" {
		return "", fmt.Errorf("kafka: the topic must be a non-empty string, got %s", luaType(args[0]))
	}
	return t, nil
}

func (c *Client) createTopic(ctx context.Context, args []any) (any, error) {
	topic, err := topicArg(args)
	if err != nil {
		return nil, err
	}
	parts, repl := int64(1), int64(1)
	if len(args) > 1 && args[1] != nil {
		if parts, _ = toInt(args[1]); parts <= 0 {
			return nil, errors.New("kafka create_topic: partitions must be a positive integer")
		}
	}
	if len(args) > 2 && args[2] != nil {
		if repl, _ = toInt(args[2]); repl <= 0 {
			return nil, errors.New("kafka create_topic: replication must be a positive integer")
		}
	}
	res, err := c.client.CreateTopics(ctx, &kgo.CreateTopicsRequest{Topics: []kgo.TopicConfig{
		{Topic: topic, NumPartitions: int(parts), ReplicationFactor: int(repl)},
	}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		return nil, fmt.Errorf("kafka create_topic %s: %w", topic, err)
	}
	return true, nil
}

func (c *Client) metadata(ctx context.Context, topic string) (kgo.Topic, error) {
	md, err := c.client.Metadata(ctx, &kgo.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return kgo.Topic{}, err
	}
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return t, t.Error
			}
			return t, nil
		}
	}
	return kgo.Topic{}, kgo.UnknownTopicOrPartition
}

// partitions(topic) -> { {id=, leader="host:port", replicas=n, isr=n}, ... }
func (c *Client) partitions(ctx context.Context, args []any) (any, error) {
	topic, err := topicArg(args)
	if err != nil {
		return nil, err
	}
	t, err := c.metadata(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("kafka partitions %s: %w", topic, err)
	}
	sort.Slice(t.Partitions, func(i, j int) bool { return t.Partitions[i].ID < t.Partitions[j].ID })
	out := make([]any, len(t.Partitions))
	for i, p := range t.Partitions {
		out[i] = map[string]any{
			"id": p.ID, "leader": fmt.Sprintf("%s:%d", p.Leader.Host, p.Leader.Port),
			"leader_id": p.Leader.ID, "replicas": len(p.Replicas), "isr": len(p.Isr),
		}
	}
	return out, nil
}

// offsets(topic) -> { {partition=, first=, last=}, ... }: last is the
// offset the next message will get (the high watermark).
func (c *Client) offsets(ctx context.Context, args []any) (any, error) {
	topic, err := topicArg(args)
	if err != nil {
		return nil, err
	}
	t, err := c.metadata(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("kafka offsets %s: %w", topic, err)
	}
	reqs := make([]kgo.OffsetRequest, 0, 2*len(t.Partitions))
	for _, p := range t.Partitions {
		reqs = append(reqs, kgo.FirstOffsetOf(p.ID), kgo.LastOffsetOf(p.ID))
	}
	res, err := c.client.ListOffsets(ctx, &kgo.ListOffsetsRequest{Topics: map[string][]kgo.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("kafka offsets %s: %w", topic, err)
	}
	po := res.Topics[topic]
	sort.Slice(po, func(i, j int) bool { return po[i].Partition < po[j].Partition })
	out := make([]any, 0, len(po))
	for _, p := range po {
		if p.Error != nil {
			return nil, fmt.Errorf("kafka offsets %s[%d]: %w", topic, p.Partition, p.Error)
		}
		out = append(out, map[string]any{"partition": p.Partition, "first": p.FirstOffset, "last": p.LastOffset})
	}
	return out, nil
}

// Close releases idle connections.
func (c *Client) Close(context.Context) error {
	c.transport.CloseIdleConnections()
	return nil
}
