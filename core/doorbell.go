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
type doorbell struct {
	mu   sync.Mutex
	conn *net.UnixConn
	raw  int // fd of conn, -1 while nobody is connected
	log  func(level int, msg string)
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
		pid, fd, err := peerPID(conn)
		if err != nil || pid != os.Getpid() {
			d.log(LevelWarn, fmt.Sprintf("doorbell: refused a connection from pid %d (this worker is %d)", pid, os.Getpid()))
			conn.Close()
			continue
		}
		// Unlink before anyone else can find the path: the accepted
		// connection lives on without it.
		os.RemoveAll(priv)
		d.mu.Lock()
		old := d.conn
		d.conn, d.raw = conn, fd
		if d.pending == ln {
			d.pending = nil
		}
		if d.missed {
			d.missed = false
			d.write(fd)
		}
		d.mu.Unlock()
		if old != nil {
			old.Close()
		}
		return
	}
}

func peerPID(conn *net.UnixConn) (pid, fd int, err error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, -1, err
	}
	var cred *unix.Ucred
	var credErr error
	err = rc.Control(func(f uintptr) {
		fd = int(f)
		cred, credErr = unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
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
	if d.conn != nil {
		d.conn.Close()
		d.conn, d.raw = nil, -1
	}
	d.mu.Unlock()
}
