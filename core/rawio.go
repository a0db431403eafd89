package core

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sockets whose reads and writes do not wake the Go runtime's monitor.
//
// In an nginx worker the Go side often has nothing to run between calls:
// its one P goes idle, and sysmon (the runtime's monitor thread) then
// sleeps until a goroutine enters a system call the ordinary way
// (syscall.Syscall: entersyscall wakes a sleeping sysmon). net.Conn's Read
// and Write are such calls, so after every idle moment a client library's
// next socket read or write paid a futex wake-up of sysmon, and sysmon's
// polling loop ran on until the P was idle again: thread switches, which
// on a VM cost more than the read itself. perf on a gRPC benchmark put
// sysmon at a tenth of the worker's CPU.
//
// RawIO's Read and Write make raw system calls on the socket, which Go
// keeps non-blocking, and wait in the netpoller on EAGAIN, as net.Conn
// does, with the connection's deadlines. The core's eventfd and doorbell
// are read and written the same way. During a lone call a read that waits
// for an answer first retries for a while (readSpinDeadline).

// RawIO returns c with raw-syscall Read and Write when c is a TCP or Unix
// stream connection, and c itself otherwise. Everything else (deadlines,
// Close, SyscallConn, keepalive settings) is c's own.
func RawIO(c net.Conn) net.Conn {
	switch t := c.(type) {
	case *net.TCPConn:
		rc, err := t.SyscallConn()
		if err != nil {
			return c
		}
		return &rawTCPConn{TCPConn: t, raw: rawSocket{rc: rc, conn: c, network: "tcp"}}
	case *net.UnixConn:
		if t.LocalAddr() != nil && t.LocalAddr().Network() != "unix" {
			return c // datagram and seqpacket sockets keep their message boundaries
		}
		rc, err := t.SyscallConn()
		if err != nil {
			return c
		}
		return &rawUnixConn{UnixConn: t, raw: rawSocket{rc: rc, conn: c, network: "unix"}}
	}
	return c
}

// DialRawIO dials with d (a zero Dialer when nil) and wraps the connection
// with RawIO. It fits the dial hooks of client libraries.
func DialRawIO(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return RawIO(c), nil
}

type rawTCPConn struct {
	*net.TCPConn
	raw rawSocket
}

func (c *rawTCPConn) Read(b []byte) (int, error)  { return c.raw.read(b) }
func (c *rawTCPConn) Write(b []byte) (int, error) { return c.raw.write(b) }

// NetConn gives the wrapped connection to code that looks for it.
func (c *rawTCPConn) NetConn() net.Conn { return c.TCPConn }

type rawUnixConn struct {
	*net.UnixConn
	raw rawSocket
}

func (c *rawUnixConn) Read(b []byte) (int, error)  { return c.raw.read(b) }
func (c *rawUnixConn) Write(b []byte) (int, error) { return c.raw.write(b) }

// NetConn gives the wrapped connection to code that looks for it.
func (c *rawUnixConn) NetConn() net.Conn { return c.UnixConn }

type rawSocket struct {
	rc      syscall.RawConn
	conn    net.Conn // for the addresses in errors
	network string
	// awaiting: bytes were written since data was last read, so an answer
	// may be on its way (readSpinDeadline). A reader goroutine that reads
	// ahead of any request (gRPC's) does not spin.
	awaiting atomic.Bool
}

func (s *rawSocket) read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	var spinChecked bool
	var spinUntil time.Time // zero: park at once
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			switch e {
			case 0:
				n = int(r)
				if n > 0 {
					s.awaiting.Store(false)
				}
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				if !spinChecked {
					spinChecked = true
					if s.awaiting.Load() {
						spinUntil = readSpinDeadline()
					}
				}
				if !spinUntil.IsZero() && time.Now().Before(spinUntil) {
					spinYield()
					continue
				}
				return false // nothing yet: wait in the netpoller
			}
			errno = e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, s.wrap("read", err)
	case errno != 0:
		return 0, s.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (s *rawSocket) write(b []byte) (int, error) {
	var n int
	var errno syscall.Errno
	err := s.rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			// MSG_NOSIGNAL: a peer that closed the connection is an EPIPE
			// here, never a SIGPIPE in nginx's process
			w, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[n])), uintptr(len(b)-n),
				unix.MSG_NOSIGNAL, 0, 0)
			switch e {
			case 0:
				n += int(w)
				continue
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // the send buffer is full: wait in the netpoller
			}
			errno = e
			return true
		}
		return true
	})
	if n > 0 {
		s.awaiting.Store(true)
	}
	switch {
	case err != nil:
		return n, s.wrap("write", err)
	case errno != 0:
		return n, s.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// wrap names a netpoller error (a deadline, a closed connection) after
// the operation, as net.Conn does, instead of net's "raw-read".
func (s *rawSocket) wrap(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return s.opError(op, oe.Err)
	}
	return s.opError(op, err)
}

func (s *rawSocket) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: s.network, Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: err}
}

// readSpinDeadline says until when a read that found no data retries
// instead of parking in the netpoller: during a lone call (the one call in
// Go, none waiting in Lua) for the engine's pump_spin_us, otherwise not at
// all (the zero time). A sequential caller's answer then finds its thread
// awake: parking costs a wake-up of the thread when the answer comes, tens
// of µs on a VM, about a round trip to a local server. Under concurrency
// there is other work to run, and spinning would take CPU from nginx.
func readSpinDeadline() time.Time {
	e := current.Load()
	if e == nil || !e.loneCall() {
		return time.Time{}
	}
	e.readSpins.Add(1)
	return time.Now().Add(e.cfg.PumpSpinAfterReply)
}
