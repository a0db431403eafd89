package core

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// nginx log levels (ngx.STDERR .. ngx.DEBUG).
const (
	LevelStderr = 0
	LevelEmerg  = 1
	LevelAlert  = 2
	LevelCrit   = 3
	LevelErr    = 4
	LevelWarn   = 5
	LevelNotice = 6
	LevelInfo   = 7
	LevelDebug  = 8
)

// current is the engine of this process, set by the C ABI; modules log
// through it so records land in nginx's error log.
var current atomic.Pointer[Engine]

// Log writes a record to nginx's error log at an nginx level. Without a
// running engine (go test) it goes to stderr.
func Log(level int, msg string) {
	if e := current.Load(); e != nil {
		e.Log(level, msg)
		return
	}
	fmt.Fprintf(os.Stderr, "[%d] %s\n", level, msg)
}

// Logf is Log with formatting.
func Logf(level int, format string, args ...any) { Log(level, fmt.Sprintf(format, args...)) }

var levelNames = [...]string{"stderr", "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"}

// Log queues a record for the dispatcher, which writes it with ngx.log.
// Once shutdown began the dispatcher may be gone, so records go to stderr
// in nginx's format instead: nginx points a worker's stderr at its error
// log.
func (e *Engine) Log(level int, msg string) {
	if e.closing.Load() {
		name := "notice"
		if level >= 0 && level < len(levelNames) {
			name = levelNames[level]
		}
		fmt.Fprintf(os.Stderr, "%s [%s] %d#%d: resty.ffi(go): %s\n",
			time.Now().Format("2006/01/02 15:04:05"), name, os.Getpid(), os.Getpid(), msg)
		return
	}
	bp, buf := getBuffer()
	buf = append(buf, msg...)
	accepted, ring := e.rings.pushCompletion(0, StatusLog, int32(level), buf)
	putBuffer(bp, buf)
	if !accepted {
		e.logsDropped.Add(1)
		return
	}
	if ring {
		e.bell.ring()
	}
}

// Logger is a slog.Logger whose records go to nginx's error log, for
// modules whose client libraries take one.
func Logger() *slog.Logger { return slog.New(slogHandler{}) }

type slogHandler struct{ attrs []slog.Attr }

func (h slogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h slogHandler) Handle(_ context.Context, r slog.Record) error {
	level := LevelInfo
	switch {
	case r.Level >= slog.LevelError:
		level = LevelErr
	case r.Level >= slog.LevelWarn:
		level = LevelWarn
	case r.Level < slog.LevelInfo:
		level = LevelDebug
	}
	msg := r.Message
	for _, a := range h.attrs {
		msg += " " + a.String()
	}
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	Log(level, msg)
	return nil
}

func (h slogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return slogHandler{attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h slogHandler) WithGroup(string) slog.Handler { return h }
