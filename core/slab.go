package core

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// slabs hands out the memory results travel in: off the Go heap (mmap'd),
// so Lua may read it while Go runs on, without pinning Go objects and
// without a cgo call (each one wakes Go's sysmon thread). Small sizes come
// from free lists of fixed classes carved from 1 MiB chunks, which are
// never returned to the system: they are bounded by the peak number of
// results waiting for Lua. Larger results get a mapping of their own,
// unmapped when Lua is done with them. Not safe for concurrent use: the
// completion ring's mutex guards it.
type slabs struct {
	free [len(slabClasses)][]unsafe.Pointer
}

var slabClasses = [...]int{256, 1 << 10, 4 << 10, 16 << 10, 64 << 10}

const slabChunk = 1 << 20

// slabBuf is one allocation: where it is and which class it came from
// (-1: a mapping of its own).
type slabBuf struct {
	p     unsafe.Pointer
	size  int // usable bytes
	class int
}

func (s *slabs) alloc(n int) (slabBuf, error) {
	for c, size := range slabClasses {
		if n > size {
			continue
		}
		if len(s.free[c]) == 0 {
			if err := s.refill(c); err != nil {
				return slabBuf{}, err
			}
		}
		last := len(s.free[c]) - 1
		p := s.free[c][last]
		s.free[c] = s.free[c][:last]
		return slabBuf{p: p, size: size, class: c}, nil
	}
	m, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return slabBuf{}, fmt.Errorf("mapping %d bytes for a result: %w", n, err)
	}
	return slabBuf{p: unsafe.Pointer(&m[0]), size: n, class: -1}, nil
}

func (s *slabs) refill(c int) error {
	m, err := unix.Mmap(-1, 0, slabChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return fmt.Errorf("mapping a chunk for results: %w", err)
	}
	base := unsafe.Pointer(&m[0])
	size := slabClasses[c]
	for off := 0; off+size <= slabChunk; off += size {
		s.free[c] = append(s.free[c], unsafe.Add(base, off))
	}
	return nil
}

func (s *slabs) release(b slabBuf) {
	if b.p == nil {
		return
	}
	if b.class < 0 {
		unix.Munmap(unsafe.Slice((*byte)(b.p), b.size))
		return
	}
	s.free[b.class] = append(s.free[b.class], b.p)
}

// bytes views b's first n bytes as a Go slice (for copying into it).
func (b slabBuf) bytes(n int) []byte { return unsafe.Slice((*byte)(b.p), n) }
