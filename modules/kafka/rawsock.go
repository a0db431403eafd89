package kafka

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSock is the TCP socket under a leader connection, read and written
// with raw system calls. In an nginx worker the Go side has one P, idle
// between calls, and Go's sysmon thread then sleeps until the next plain
// system call wakes it: net.Conn's read and write are plain ones, so each
// sync send woke sysmon (a thread wake-up and its sleep loop after it, on
// a machine where context switches are the cost). The socket is
// non-blocking, so a raw call never blocks: on EAGAIN it waits in the
// netpoller (syscall.RawConn), with the deadlines set on the connection,
// as net.Conn does. The core does the same for its eventfd and doorbell.
type rawSock struct {
	*net.TCPConn
	rc syscall.RawConn
}

func newRawSock(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &rawSock{TCPConn: tc, rc: rc}
}

func (s *rawSock) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			switch e {
			case 0:
				n = int(r)
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // nothing yet: wait in the netpoller
			}
			errno = e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, s.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (s *rawSock) Write(b []byte) (int, error) {
	var n int
	var errno syscall.Errno
	err := s.rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			// send with MSG_NOSIGNAL: a broker that closed the connection
			// must be an EPIPE, not a SIGPIPE in nginx's process
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
	if err == nil && errno != 0 {
		err = s.opError("write", errno)
	}
	return n, err
}

func (s *rawSock) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(),
		Err: os.NewSyscallError(op, errno)}
}
