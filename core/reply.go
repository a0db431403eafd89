package core

import "sync"

// Reply is a result a module encodes itself into a buffer of the core's
// pool. Returned as the whole result of Call, its bytes go to Lua as they
// are and the buffer goes back to the pool, so a module that builds large
// results (rows of a query) allocates no buffer per call and the core
// copies the bytes once. The module must not touch a Reply it returned.
// Nested inside another result, a Reply is copied like Raw and left to
// the garbage collector.
type Reply struct {
	Encoder
	entry *[]byte // the pool entry Buf came from
}

var replyPool = sync.Pool{New: func() any { return &Reply{} }}

// NewReply returns an empty Reply; Release it if it is not returned.
func NewReply() *Reply {
	r := replyPool.Get().(*Reply)
	r.entry, r.Buf = getBuffer()
	return r
}

// Release gives the buffer back. The Reply must not be used after.
func (r *Reply) Release() {
	if r == nil || r.entry == nil {
		return
	}
	putBuffer(r.entry, r.Buf)
	r.entry, r.Buf, r.Register = nil, nil, nil
	replyPool.Put(r)
}
