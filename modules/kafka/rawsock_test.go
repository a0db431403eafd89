package kafka

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns a rawSock client and the plain server end.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rc := newRawSock(c)
	if _, ok := rc.(*rawSock); !ok {
		t.Fatalf("newRawSock gave %T", rc)
	}
	t.Cleanup(func() { rc.Close(); s.Close() })
	return rc, s
}

func TestRawSockReadWrite(t *testing.T) {
	c, s := tcpPair(t)
	// more than the socket buffers hold: Write waits for the reader
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18)
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(s, int64(len(big))))
		got <- b
	}()
	if n, err := c.Write(big); err != nil || n != len(big) {
		t.Fatalf("write: %d, %v", n, err)
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("read back %d bytes, differ", len(b))
	}
	go s.Write([]byte("answer"))
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "answer" {
		t.Fatalf("read: %q, %v", buf, err)
	}
}

func TestRawSockDeadlineAndClose(t *testing.T) {
	c, s := tcpPair(t)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	s.Close()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after the peer closed: %v", err)
	}
	// writes to a closed peer fail (EPIPE or ECONNRESET), without a signal
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write([]byte("x"))
		time.Sleep(time.Millisecond)
	}
	if err == nil || !errors.As(err, &ne) {
		t.Fatalf("write to a closed peer: %v", err)
	}
}
