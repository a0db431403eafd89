package grpc

import (
	"context"
	"testing"
)

// BenchmarkUnary is the module's own cost around grpc-go: one sequential
// SayHello through conn.Call (conversion both ways included).
func BenchmarkUnary(b *testing.B) {
	needServer(b)
	obj, err := newConn(map[string]any{"target": plainAddr})
	if err != nil {
		b.Fatal(err)
	}
	defer obj.Close(context.Background())
	args := []any{"rffitest.v1.TestService", "SayHello", map[string]any{"name": "bench"}, nil}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := obj.Call(ctx, "call", args); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnaryGoroutine runs each call on a fresh goroutine, as the core does.
func BenchmarkUnaryGoroutine(b *testing.B) {
	needServer(b)
	obj, err := newConn(map[string]any{"target": plainAddr})
	if err != nil {
		b.Fatal(err)
	}
	defer obj.Close(context.Background())
	args := []any{"rffitest.v1.TestService", "SayHello", map[string]any{"name": "bench"}, nil}
	ctx := context.Background()
	done := make(chan error)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		go func() { _, err := obj.Call(ctx, "call", args); done <- err }()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConvert is the module's CPU per unary call besides grpc-go:
// the request table to a message, the reply to MessagePack.
func BenchmarkConvert(b *testing.B) {
	if _, err := compileFiles(context.Background(), []string{"rffitest/v1/test.proto"}, []string{protoDir}, nil); err != nil {
		b.Fatal(err)
	}
	obj, err := newConn(map[string]any{"target": plainAddr})
	if err != nil {
		b.Fatal(err)
	}
	c := obj.(*conn)
	defer c.Close(context.Background())
	m, err := c.method(context.Background(), "rffitest.v1.TestService", "SayHello")
	if err != nil {
		b.Fatal(err)
	}
	req := map[string]any{"name": "bench"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		msg, err := c.read.newMessage(m.in, req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := encodeMessage(msg, c.out, c.types); err != nil {
			b.Fatal(err)
		}
	}
}
