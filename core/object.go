package core

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Object is anything Lua can call: a runtime made by a Factory, or an
// object returned by a call (a stream, a transaction, a consumer).
type Object interface {
	// Call performs one operation. It runs on its own goroutine.
	Call(ctx context.Context, op string, args []any) (any, error)
	// Close releases the object. ctx carries the shutdown deadline: flush
	// what was accepted, then return.
	Close(ctx context.Context) error
}

// Options is the decoded options table given to rffi.open.
type Options = map[string]any

// DecodeOptions decodes an options frame as rffi.open does before it calls
// a factory: an empty frame or nil is an empty table, anything but a table
// with string keys is an error. The modules' fuzz tests build their inputs
// with it, so they reach the factories exactly as Lua does.
func DecodeOptions(frame []byte) (Options, error) {
	if len(frame) == 0 {
		return Options{}, nil
	}
	v, err := Decode(frame)
	if err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case nil:
		return Options{}, nil
	case map[string]any:
		return x, nil
	}
	return nil, fmt.Errorf("a table with string keys expected, got %T", v)
}

// Factory creates a runtime. It must not block on I/O.
type Factory func(opts Options) (Object, error)

var (
	factoriesMu sync.RWMutex
	factories   = map[string]Factory{}
)

// Register makes a runtime available to rffi.open under name. It is meant to
// be called from a module's init function; registering a name twice panics.
func Register(name string, f Factory) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	if _, dup := factories[name]; dup {
		panic("resty.ffi: runtime " + name + " registered twice")
	}
	factories[name] = f
}

// Runtimes lists the registered runtime names, sorted.
func Runtimes() []string {
	factoriesMu.RLock()
	defer factoriesMu.RUnlock()
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lookupFactory(name string) (Factory, error) {
	factoriesMu.RLock()
	f := factories[name]
	factoriesMu.RUnlock()
	if f == nil {
		return nil, fmt.Errorf("unknown runtime %q (registered: %v)", name, Runtimes())
	}
	return f, nil
}

// ErrEOF ends a stream: Lua's recv returns nil, "eof".
var ErrEOF = errors.New("eof")

// ErrTimeout is what a call reports when its deadline passed.
var ErrTimeout = errors.New("timeout")

// DetailedError carries structured fields (SQLSTATE, gRPC status, ...) that
// Lua receives as a third return value after nil and the message.
type DetailedError interface {
	error
	Detail() any
}

// UnknownOp is the error for an operation an object does not serve.
func UnknownOp(kind, op string) error {
	return fmt.Errorf("%s: unknown operation %q", kind, op)
}

// entry is one live object in the handle table.
type entry struct {
	obj   Object
	stats *RuntimeStats
	// owned objects (streams, transactions) are closed with their parent
	// runtime at shutdown; root runtimes are closed last.
	root bool
	// register turns an object found in this entry's results into a
	// handle (Encoder.Register); made once, not per call.
	register func(Object) (Handle, error)
}

// handleTable maps handles given to Lua to Go objects.
type handleTable struct {
	mu      sync.Mutex
	next    Handle
	objects map[Handle]*entry
}

func newHandleTable() *handleTable {
	return &handleTable{next: 1, objects: map[Handle]*entry{}}
}

func (t *handleTable) add(e *entry) Handle {
	t.mu.Lock()
	h := t.next
	t.next++
	t.objects[h] = e
	t.mu.Unlock()
	return h
}

func (t *handleTable) get(h Handle) *entry {
	t.mu.Lock()
	e := t.objects[h]
	t.mu.Unlock()
	return e
}

func (t *handleTable) remove(h Handle) *entry {
	t.mu.Lock()
	e := t.objects[h]
	delete(t.objects, h)
	t.mu.Unlock()
	return e
}

func (t *handleTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.objects)
}

// takeAll empties the table: children first, roots after, so a runtime
// outlives the streams and transactions made from it.
func (t *handleTable) takeAll() (children, roots []*entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for h, e := range t.objects {
		if e.root {
			roots = append(roots, e)
		} else {
			children = append(children, e)
		}
		delete(t.objects, h)
	}
	return children, roots
}
