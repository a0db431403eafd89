package core

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// doorbell is the Unix socket that wakes the Lua dispatcher. It carries no
// payload: one byte means "drain now". Only a peer in this very process may
// connect (SO_PEERCRED), and the socket file and its private directory are
// removed as soon as that connection is accepted, so nothing is left on
// disk and nobody else can connect afterwards.
//
// The accepted connection is kept as a bare descriptor, outside Go's
// netpoller: Go only ever writes to it, and a registered socket would wake
// the netpoller's thread each time the dispatcher's read frees buffer
// space (an edge-triggered "writable" event nobody waits for).
type doorbell struct {
	mu  sync.Mutex
	raw int // the connection's descriptor, -1 while nobody is connected
	log func(level int, msg string)
	// pending is a listener not yet connected to; closing it at shutdown
	// removes its directory.
	pending *net.UnixListener
	rings   atomic.Uint64 // bytes written: how often the dispatcher was woken
	// missed is a ring that came before the dispatcher's connection was
	// accepted; it is delivered on accept, or the dispatcher would sleep.
	missed bool
}

func newDoorbell(log func(int, string)) *doorbell {
	return &doorbell{raw: -1, log: log}
}

// listen opens a fresh socket in a new private directory under dir and
// returns its path. The dispatcher calls it each time it (re)connects.
func (d *doorbell) listen(dir string) (string, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	priv, err := os.MkdirTemp(dir, "resty-ffi-")
	if err != nil {
		return "", fmt.Errorf("doorbell: creating a private directory in %s: %w", dir, err)
	}
	path := filepath.Join(priv, "doorbell.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		os.RemoveAll(priv)
		return "", fmt.Errorf("doorbell: listening on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	d.mu.Lock()
	if d.pending != nil {
		d.pending.Close()
	}
	d.pending = ln
	d.mu.Unlock()
	go d.accept(ln, priv)
	return path, nil
}

func (d *doorbell) accept(ln *net.UnixListener, priv string) {
	defer func() {
		ln.Close()
		os.RemoveAll(priv)
	}()
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				d.log(LevelErr, "doorbell: accept: "+err.Error())
			}
			return
		}
		pid, fd, err := takePeer(conn)
		if err != nil || pid != os.Getpid() {
			d.log(LevelWarn, fmt.Sprintf("doorbell: refused a connection from pid %d (this worker is %d)", pid, os.Getpid()))
			if fd >= 0 {
				unix.Close(fd)
			}
			continue
		}
		// Unlink before anyone else can find the path: the accepted
		// connection lives on without it.
		os.RemoveAll(priv)
		d.mu.Lock()
		old := d.raw
		d.raw = fd
		if d.pending == ln {
			d.pending = nil
		}
		if d.missed {
			d.missed = false
			d.write(fd)
		}
		d.mu.Unlock()
		if old >= 0 {
			unix.Close(old)
		}
		return
	}
}

// takePeer returns the pid of conn's peer and a duplicate of its
// descriptor, and closes conn: closing takes the socket out of Go's
// netpoller, the duplicate keeps it open. The duplicate shares the file
// status flags, so it stays non-blocking, as Go made it and ring needs.
// fd is -1 when err is set.
func takePeer(conn *net.UnixConn) (pid, fd int, err error) {
	defer conn.Close()
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, -1, err
	}
	var cred *unix.Ucred
	fd = -1
	ctlErr := rc.Control(func(f uintptr) {
		cred, err = unix.GetsockoptUcred(int(f), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err == nil {
			fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
		}
	})
	if ctlErr != nil {
		err = ctlErr
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return 0, -1, err
	}
	return int(cred.Pid), fd, nil
}

var ringByte = []byte{1}

// ring wakes the dispatcher. The socket is non-blocking: if its buffer is
// full the dispatcher has unread rings already, so EAGAIN is fine.
func (d *doorbell) ring() {
	d.mu.Lock()
	if fd := d.raw; fd >= 0 {
		d.write(fd)
	} else {
		d.missed = true
	}
	d.mu.Unlock()
}

func (d *doorbell) write(fd int) {
	// A raw send: the socket is non-blocking, and a plain syscall would
	// wake Go's sysmon thread each time. MSG_NOSIGNAL: a dispatcher that
	// went away must not bring SIGPIPE.
	unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&ringByte[0])), 1,
		unix.MSG_NOSIGNAL, 0, 0)
	d.rings.Add(1)
}

// connected reports whether a dispatcher holds the doorbell.
func (d *doorbell) connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.raw >= 0
}

func (d *doorbell) close() {
	d.mu.Lock()
	if d.pending != nil {
		d.pending.Close()
		d.pending = nil
	}
	if d.raw >= 0 {
		unix.Close(d.raw)
		d.raw = -1
	}
	d.mu.Unlock()
}
