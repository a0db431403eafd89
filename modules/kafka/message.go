package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"syscall"
	"unsafe"

	kgo "github.com/segmentio/kafka-go"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// bytesArg reads an optional string argument: nil, false and ngx.null mean
// "none" (a nil key, a tombstone value).
func bytesArg(v any, what string) ([]byte, error) {
	switch x := v.(type) {
	case nil, core.Null:
		return nil, nil
	case bool:
		if !x {
			return nil, nil
		}
	case string:
		if x == "" {
			return []byte{}, nil // empty, not null
		}
		// A view, not a copy: decoded strings are fresh Go strings nobody
		// else holds, and kafka-go only reads message bytes.
		return unsafe.Slice(unsafe.StringData(x), len(x)), nil
	case []byte:
		return x, nil
	case int64, uint64, float64:
		s, _ := core.ToString(x)
		return []byte(s), nil
	}
	return nil, fmt.Errorf("%s must be a string, got %s", what, luaType(v))
}

// headersArg accepts { name = value, ... } or { {name, value}, ... } (the
// second keeps order and repeated names).
func headersArg(v any) ([]kgo.Header, error) {
	switch x := v.(type) {
	case nil, core.Null:
		return nil, nil
	case bool:
		if !x {
			return nil, nil
		}
	case map[string]any:
		if len(x) == 0 {
			return nil, nil
		}
		names := make([]string, 0, len(x))
		for k := range x {
			names = append(names, k)
		}
		sort.Strings(names)
		hs := make([]kgo.Header, 0, len(x))
		for _, k := range names {
			val, err := bytesArg(x[k], "header "+k)
			if err != nil {
				return nil, err
			}
			hs = append(hs, kgo.Header{Key: k, Value: val})
		}
		return hs, nil
	case []any:
		hs := make([]kgo.Header, 0, len(x))
		for i, it := range x {
			pair, ok := it.([]any)
			if !ok || len(pair) != 2 {
				return nil, fmt.Errorf("headers[%d] must be a {name, value} pair", i+1)
			}
			name, ok := pair[0].(string)
			if !ok {
				return nil, fmt.Errorf("headers[%d]: the name must be a string", i+1)
			}
			val, err := bytesArg(pair[1], "header "+name)
			if err != nil {
				return nil, err
			}
			hs = append(hs, kgo.Header{Key: name, Value: val})
		}
		return hs, nil
	}
	return nil, fmt.Errorf("headers must be a table, got %s", luaType(v))
}

// messageArgs reads (topic, key, value, headers) starting at args[i].
func messageArgs(args []any, i int) (kgo.Message, error) {
	var m kgo.Message
	at := func(j int) any {
		if i+j < len(args) {
			return args[i+j]
		}
		return nil
	}
	topic, ok := at(0).(string)
	if !ok || topic == "" {
		return m, fmt.Errorf("the topic must be a non-empty string, got %s", luaType(at(0)))
	}
	m.Topic = topic
	var err error
	if m.Key, err = bytesArg(at(1), "the key"); err != nil {
		return m, err
	}
	if m.Value, err = bytesArg(at(2), "the value"); err != nil {
		return m, err
	}
	if m.Headers, err = headersArg(at(3)); err != nil {
		return m, err
	}
	return m, nil
}

func headersOut(hs []kgo.Header) map[string]any {
	if len(hs) == 0 {
		return nil
	}
	out := make(map[string]any, len(hs))
	for _, h := range hs {
		out[h.Key] = h.Value
	}
	return out
}

// errorKind names a failure for stats and error handlers.
func errorKind(err error) string {
	var kerr kgo.Error
	var tooLarge kgo.MessageTooLargeError
	var netErr net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, core.ErrTimeout):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, errBufferFull):
		return "buffer_full"
	case errors.Is(err, errClosed) || errors.Is(err, io.ErrClosedPipe):
		return "closed"
	case errors.As(err, &tooLarge):
		return "message_too_large"
	case errors.As(err, &kerr):
		return strings.ReplaceAll(strings.ToLower(kerr.Title()), " ", "_")
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &netErr):
		return "network"
	}
	return "other"
}

// retriable says whether trying again later may succeed.
func retriable(err error) bool {
	var kerr kgo.Error
	var tooLarge kgo.MessageTooLargeError
	switch {
	case errors.As(err, &tooLarge), errors.Is(err, errClosed), errors.Is(err, errBufferFull):
		return false
	case errors.As(err, &kerr):
		return kerr.Temporary()
	}
	return true
}

// firstError unwraps kafka-go's per-message WriteErrors.
func firstError(err error) error {
	var werrs kgo.WriteErrors
	if errors.As(err, &werrs) {
		for _, e := range werrs {
			if e != nil {
				return e
			}
		}
	}
	return err
}
