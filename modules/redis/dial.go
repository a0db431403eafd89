package redis

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// checkedConn hides the socket (syscall.Conn) from go-redis and checks
// for a closed peer itself. go-redis peeks into a pooled connection's
// socket before each use with syscall.Recvfrom, an ordinary system call
// that wakes the Go runtime's monitor thread, which RawIO is there to
// avoid (the peek cost a sixth of the rate of sequential GETs). The same
// peek, made here with a raw system call before each write, finds a
// connection the server closed while it sat in the pool (a restart, the
// server's idle timeout); the write then fails with io.EOF having sent
// nothing, and go-redis retries the command on a new connection.
// Unlike go-redis's peek, unread data is no reason to fail: a pub/sub
// connection writes SUBSCRIBE while messages wait to be read.
type checkedConn struct {
	net.Conn // a core.RawIO connection
	rc       syscall.RawConn
}

var errServerClosed = fmt.Errorf("redis: the server closed the connection: %w", io.EOF)

func (c *checkedConn) Write(b []byte) (int, error) {
	if c.peerClosed() {
		return 0, errServerClosed
	}
	return c.Conn.Write(b)
}

func (c *checkedConn) peerClosed() bool {
	closed := false
	err := c.rc.Control(func(fd uintptr) {
		var one [1]byte
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&one[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			closed = n == 0 // end of stream; n == 1 is data waiting
		case unix.EAGAIN, unix.EINTR:
		default:
			closed = true // ECONNRESET and the like
		}
	})
	return err != nil || closed
}

func newCheckedConn(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return &checkedConn{Conn: c, rc: rc}
}

// dialer is go-redis's Dialer for every client mode: core.RawIO
// connections (see core/rawio.go) with go-redis's own keepalive policy
// and dial timeout, and TLS on top when conf is set.
func dialer(timeout time.Duration, conf *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{
		Timeout: timeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3,
		},
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := core.DialRawIO(ctx, d, network, addr)
		if err != nil {
			return nil, err
		}
		if conf == nil {
			return newCheckedConn(c), nil
		}
		cfg := conf
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			// as tls.Dial does: verify against the host dialed
			cfg = conf.Clone()
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			} else {
				cfg.ServerName = addr
			}
		}
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
}
