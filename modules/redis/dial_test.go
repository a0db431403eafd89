package redis

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// dialPair dials a local listener with the module's dialer and returns
// the client connection and the server's end.
func dialPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := dialer(time.Second, nil)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept() // the connection waits in the backlog
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

func TestDialerHidesTheSocket(t *testing.T) {
	c, _ := dialPair(t)
	if _, ok := c.(syscall.Conn); ok {
		t.Fatalf("%T exposes its socket: go-redis would peek with an ordinary system call", c)
	}
}

func TestCheckedConnWrite(t *testing.T) {
	cases := []struct {
		name    string
		server  func(s net.Conn)
		wantEOF bool
	}{
		{"open, nothing waiting", func(net.Conn) {}, false},
		{"open, a reply waiting", func(s net.Conn) { s.Write([]byte("+PONG\r\n")) }, false},
		{"closed by the server", func(s net.Conn) { s.Close() }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, s := dialPair(t)
			tc.server(s)
			time.Sleep(20 * time.Millisecond) // let the FIN or the data arrive
			n, err := c.Write([]byte("PING\r\n"))
			if tc.wantEOF {
				if n != 0 || !errors.Is(err, io.EOF) {
					t.Fatalf("write after the server closed: %d, %v (want 0 bytes and io.EOF, which go-redis retries)", n, err)
				}
				return
			}
			if n != 6 || err != nil {
				t.Fatalf("write: %d, %v", n, err)
			}
			buf := make([]byte, 6)
			if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "PING\r\n" {
				t.Fatalf("the server read %q, %v", buf, err)
			}
		})
	}
}
