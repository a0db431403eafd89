package grpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/dynamicpb"
)

// stream is a server-, client- or bidi-streaming call behind a Lua handle.
// A pump goroutine reads replies ahead into items, so a recv that times
// out in Lua never loses a message; sends are serialized (grpc-go allows
// one SendMsg at a time).
type stream struct {
	c      *conn
	m      *method
	cs     grpc.ClientStream
	out    outOpts
	cancel context.CancelFunc

	items chan core.Raw
	done  chan struct{} // closed when the pump ends; final is then set
	final error         // core.ErrEOF or a statusError

	sendMu    sync.Mutex
	sendDone  bool
	closeOnce sync.Once
}

const readAhead = 64

// openStream: args = service, method, [request (server streams)], opts.
func (c *conn) openStream(ctx context.Context, kind string, args []any) (any, error) {
	m, err := c.method(ctx, arg(args, 0), arg(args, 1))
	if err != nil {
		return nil, err
	}
	if m.desc == nil || streamKind(m.desc) != kind {
		want := "call"
		if m.desc != nil {
			want = streamKind(m.desc)
		}
		return nil, fmt.Errorf("grpc: %s is not a %s method: use %s", m.path, kind, want)
	}
	optIdx := 2
	var req *dynamicpb.Message
	if kind == "server_stream" {
		optIdx = 3
		if req, err = c.read.newMessage(m.in, arg(args, 2)); err != nil {
			return nil, err
		}
	}
	co, err := c.callOptions(arg(args, optIdx))
	if err != nil {
		return nil, err
	}
	// the stream outlives this call: its context hangs off the connection,
	// with the call's own context only guarding the opening
	sctx, cancel := context.WithCancel(c.ctx)
	if len(co.md) > 0 {
		sctx = metadata.NewOutgoingContext(sctx, co.md)
	}
	// timeout 0 (the default for streams unless given) means no deadline
	if t, ok := streamTimeout(arg(args, optIdx)); ok && t > 0 {
		var c2 context.CancelFunc
		sctx, c2 = context.WithTimeout(sctx, t)
		inner := cancel
		cancel = func() { c2(); inner() }
	}
	stop := context.AfterFunc(ctx, cancel)
	var opts []grpc.CallOption
	if co.ready {
		opts = append(opts, grpc.WaitForReady(true))
	}
	cs, err := c.cc.NewStream(sctx, m.desc, m.path, opts...)
	if err == nil && req != nil {
		if err = cs.SendMsg(req); err == nil || errors.Is(err, io.EOF) {
			err = cs.CloseSend()
		}
	}
	if !stop() || err != nil {
		cancel()
		if err == nil {
			err = ctx.Err()
		}
		return nil, c.statusError(err, nil, nil, false)
	}
	s := &stream{c: c, m: m, cs: cs, out: co.out, cancel: cancel,
		items: make(chan core.Raw, readAhead), done: make(chan struct{}), sendDone: req != nil}
	go s.pump(sctx)
	return s, nil
}

// streamTimeout is the stream's own deadline: only when the options give
// one (the connection's default timeout is for unary calls).
func streamTimeout(v any) (time.Duration, bool) {
	t, _ := v.(map[string]any)
	ms, ok := toInt64(t["timeout"])
	return time.Duration(ms) * time.Millisecond, ok
}

func (s *stream) pump(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.final = fmt.Errorf("grpc stream %s: panic: %v", s.m.path, r)
			core.Log(core.LevelErr, s.final.Error())
		}
		close(s.items)
		close(s.done)
	}()
	for {
		msg := dynamicpb.NewMessage(s.m.out)
		if err := s.cs.RecvMsg(msg); err != nil {
			if errors.Is(err, io.EOF) {
				s.final = core.ErrEOF
			} else {
				s.final = s.c.statusError(err, nil, nil, false)
			}
			return
		}
		raw, err := encodeMessage(msg, s.out, s.c.types)
		if err != nil {
			s.final = fmt.Errorf("grpc: decoding a %s message: %w", s.m.path, err)
			s.cancel()
			return
		}
		select {
		case s.items <- raw:
		case <-ctx.Done():
			s.final = s.c.statusError(ctx.Err(), nil, nil, false)
			return
		}
	}
}

// Call serves recv, send, close_send, headers and trailers.
func (s *stream) Call(ctx context.Context, op string, args []any) (any, error) {
	switch op {
	case "recv":
		return s.recv(ctx)
	case "recv_many":
		max, ok := toInt64(arg(args, 0))
		if !ok || max < 1 {
			return nil, errors.New("grpc: recv_many: a positive count expected")
		}
		return s.recvMany(ctx, int(max))
	case "send":
		return s.send(ctx, arg(args, 0))
	case "close_send":
		return s.closeSend(ctx)
	case "headers":
		md, err := s.cs.Header()
		if err != nil {
			return nil, s.c.statusError(err, nil, nil, false)
		}
		return mdToLua(md), nil
	case "trailers":
		select {
		case <-s.done:
			return mdToLua(s.cs.Trailer()), nil
		default:
			return nil, errors.New("grpc: trailers are known once recv returned the end of the stream")
		}
	}
	return nil, core.UnknownOp("grpc stream", op)
}

func (s *stream) recv(ctx context.Context) (any, error) {
	select {
	case raw, ok := <-s.items:
		if !ok {
			return nil, s.final
		}
		return raw, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// recvMany waits for one message, then takes up to max-1 more that are
// already there: one round trip from Lua for a burst of messages. After
// the last message it reports the end (or error) like recv.
func (s *stream) recvMany(ctx context.Context, max int) (any, error) {
	first, err := s.recv(ctx)
	if err != nil {
		return nil, err
	}
	out := []any{first}
	for len(out) < max {
		select {
		case raw, ok := <-s.items:
			if !ok {
				return out, nil
			}
			out = append(out, raw)
		default:
			return out, nil
		}
	}
	return out, nil
}

func (s *stream) send(ctx context.Context, v any) (any, error) {
	if s.m.desc.ServerStreams && !s.m.desc.ClientStreams {
		return nil, errors.New("grpc: a server stream takes no messages after its request")
	}
	msg, err := s.c.read.newMessage(s.m.in, v)
	if err != nil {
		return nil, err
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.sendDone {
		return nil, errors.New("grpc: send after close_send")
	}
	if err := s.cs.SendMsg(msg); err != nil {
		if errors.Is(err, io.EOF) {
			// the call ended: its status is what the pump reads
			select {
			case <-s.done:
				if s.final != core.ErrEOF {
					return nil, s.final
				}
				return nil, errors.New("grpc: the server ended the stream")
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return nil, s.c.statusError(err, nil, nil, false)
	}
	return true, nil
}

// closeSend half-closes; a client stream then returns its one reply.
func (s *stream) closeSend(ctx context.Context) (any, error) {
	s.sendMu.Lock()
	if !s.sendDone {
		s.sendDone = true
		if err := s.cs.CloseSend(); err != nil {
			s.sendMu.Unlock()
			return nil, s.c.statusError(err, nil, nil, false)
		}
	}
	s.sendMu.Unlock()
	if s.m.desc.ServerStreams {
		return true, nil
	}
	return s.recv(ctx)
}

// Close cancels the call (a no-op once it ended) and waits for the pump.
func (s *stream) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.cancel()
		select {
		case <-s.done:
		case <-ctx.Done():
		}
	})
	return nil
}
