// Package core is the Go half of lua-resty-ffi-go: it runs Go code on
// goroutines inside an nginx worker and hands the results back to Lua
// without ever blocking the worker's event loop.
//
// # The model
//
// A Runtime is a Go object created by a registered Factory from an options
// value (rffi.open(name, opts) in Lua). Every call from Lua names an object
// (a runtime, or an object a runtime returned, such as a stream) and an
// operation, and carries MessagePack-encoded arguments:
//
//	Lua                         core (this package)              module
//	rffi_submit ──copy args──▶  task table slot + goroutine ──▶  Object.Call(ctx, op, args)
//	                            completion queue ◀── result ────┘
//	dispatcher ◀── doorbell ──  (one byte per batch)
//	rffi_drain ◀── C buffers ─  completions, log records
//
// Submit never blocks: it copies the arguments, takes a free slot in the
// task table (or fails with "busy"), starts a goroutine and returns. The
// goroutine encodes its result into a buffer from C.malloc and pushes it on
// the completion queue. When the queue goes from "nobody listening" to
// non-empty, the doorbell writes one byte to a Unix socket held by the Lua
// dispatcher, which drains every completion in one call and frees the
// buffers with free() once decoded.
//
// # Writing a module
//
// A module is a package that calls Register in its init function and is
// imported by the shared library's main package:
//
//	func init() { core.Register("hello", func(opts core.Options) (core.Object, error) { ... }) }
//
// Factories must not block on the network: connect lazily, on the first call.
// Call runs on its own goroutine and must honour ctx (it is canceled when the
// Lua side times out, closes a handle, or the worker exits). A panic inside
// Call becomes an error for that call.
package core
