package core

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rawPair returns a RawIO client and the plain server end of a stream
// connection on network ("tcp" or "unix").
func rawPair(t *testing.T, network string) (net.Conn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		s, _ := ln.Accept()
		accepted <- s
	}()
	c, err := DialRawIO(context.Background(), nil, network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

var rawNetworks = []string{"tcp", "unix"}

func TestRawIOWraps(t *testing.T) {
	for _, network := range rawNetworks {
		c, _ := rawPair(t, network)
		switch c.(type) {
		case *rawTCPConn, *rawUnixConn:
		default:
			t.Fatalf("%s: DialRawIO gave %T", network, c)
		}
		if nc, ok := c.(interface{ NetConn() net.Conn }); !ok || nc.NetConn() == nil {
			t.Fatalf("%s: no NetConn", network)
		}
	}
	// a datagram socket keeps its own Read and Write
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "d.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if got := RawIO(pc); got != net.Conn(pc) {
		t.Fatalf("unixgram wrapped as %T", got)
	}
}

func TestRawIOReadWrite(t *testing.T) {
	for _, network := range rawNetworks {
		t.Run(network, func(t *testing.T) {
			c, s := rawPair(t, network)
			// more than the socket buffers hold: Write waits in the netpoller
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
				t.Fatalf("read back %d bytes, they differ", len(b))
			}
			go s.Write([]byte("answer"))
			buf := make([]byte, 6)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "answer" {
				t.Fatalf("read: %q, %v", buf, err)
			}
			if n, err := c.Read(nil); n != 0 || err != nil {
				t.Fatalf("empty read: %d, %v", n, err)
			}
		})
	}
}

func TestRawIOErrors(t *testing.T) {
	for _, network := range rawNetworks {
		t.Run(network, func(t *testing.T) {
			c, s := rawPair(t, network)
			c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			var oe *net.OpError
			if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("read past the deadline: %v", err)
			}
			if !errors.As(err, &oe) || oe.Op != "read" || oe.Net != network {
				t.Fatalf("deadline error names %+v, want a %s read", oe, network)
			}
			c.SetReadDeadline(time.Time{})
			s.Close()
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after the peer closed: %v", err)
			}
			// writes to a closed peer fail (EPIPE or ECONNRESET); with
			// MSG_NOSIGNAL no SIGPIPE reaches the test process
			err = io.EOF
			for i := 0; i < 100 && err == io.EOF; i++ {
				_, err = c.Write([]byte("x"))
				if err == nil {
					err = io.EOF
				}
				time.Sleep(time.Millisecond)
			}
			if err == io.EOF || !errors.As(err, &oe) || oe.Op != "write" {
				t.Fatalf("write to a closed peer: %v", err)
			}
			c.Close()
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after close: %v", err)
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) || !strings.Contains(err.Error(), "write") {
				t.Fatalf("write after close: %v", err)
			}
		})
	}
}

// askConn is the connection of the fake object's "ask" operation.
var askConn net.Conn

// A read that finds no answer yet spins instead of sleeping only during a
// lone call and after the connection sent something: read_spins counts
// those reads.
func TestReadSpinsDuringALoneCall(t *testing.T) {
	cases := []struct {
		name   string
		window time.Duration // pump_spin_us
		write  bool          // the call sends before it reads
		spins  uint64
	}{
		{"a lone call waiting for its answer", 0, true, 1},
		{"a read with nothing sent before it", 0, false, 0},
		{"spinning off", -1, true, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newTestEngine(t, Config{PumpSpinAfterReply: c.window})
			// the process's engine, as rffi_init makes it
			current.Store(e)
			t.Cleanup(func() { current.CompareAndSwap(e, nil) })
			client, server := rawPair(t, "tcp")
			askConn = client
			go func() {
				if c.write {
					buf := make([]byte, 1)
					if _, err := io.ReadFull(server, buf); err != nil {
						return
					}
				}
				// late enough that the reader finds nothing at first
				time.Sleep(2 * time.Millisecond)
				server.Write([]byte{'!'})
			}()
			h := openFake(t, e)
			if rc := e.rings.luaPush(kindCall, 1, h, "ask", args(t, c.write), 0); rc < 0 {
				t.Fatalf("push: rc %d", rc)
			}
			e.writeEventfd()
			if got := await(t, e, 1); got.Status != StatusOK {
				t.Fatalf("ask: status %d", got.Status)
			}
			if got := e.readSpins.Load(); got != c.spins {
				t.Fatalf("read_spins = %d, want %d", got, c.spins)
			}
		})
	}
}
