package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"syscall"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// replyError is an error reply from the server ("ERR ...", "WRONGTYPE
// ..."). Lua tells it from a transport failure by its detail (true):
// lua-resty-redis returns false, msg for the former and nil, msg for the
// latter.
type replyError struct{ msg string }

func (e replyError) Error() string { return e.msg }
func (e replyError) Detail() any   { return true }

// maxExact is the largest integer a Lua number holds exactly.
const maxExact = 1 << 53

// convertReply shapes a go-redis reply as lua-resty-redis shapes it: nil
// bulk is ngx.null (nil inside arrays decodes as ngx.null already),
// integers are numbers, error replies inside arrays are {false, msg}.
func convertReply(v any) any {
	switch x := v.(type) {
	case string, nil:
		return x
	case int64:
		if x > maxExact || x < -maxExact {
			return float64(x)
		}
		return x
	case []any:
		for i, it := range x {
			switch it.(type) {
			case string, int64, nil:
			default:
				x[i] = convertReply(it)
			}
		}
		return x
	case goredis.Error:
		return []any{false, x.Error()}
	case map[any]any:
		for k, it := range x {
			x[k] = convertReply(it)
		}
		return x
	case *big.Int:
		return x.String()
	}
	return v
}

// transportError renders a failure that is not an error reply with the
// words a cosocket would use, so code written for lua-resty-redis that
// matches on them ("timeout", "connection refused", "closed") keeps working.
func transportError(err error) error {
	if err == nil {
		return nil
	}
	var re goredis.Error
	if errors.As(err, &re) {
		return replyError{msg: re.Error()}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return core.ErrTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused")
	case errors.Is(err, syscall.ECONNRESET):
		return errors.New("connection reset by peer")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.EPIPE):
		return errors.New("closed")
	case errors.Is(err, goredis.ErrClosed):
		return errors.New("closed")
	case errors.Is(err, goredis.ErrPoolTimeout):
		return errors.New("timeout (waiting for a free connection in the pool)")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return core.ErrTimeout
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("%s could not be resolved (%s)", dnsErr.Name, dnsErr.Err)
	}
	return err
}

// commandArgs builds a go-redis argument list from the command name and
// the Lua arguments, rendering values as Lua's tostring() would (what
// lua-resty-redis sends).
func commandArgs(name string, args []any) ([]any, error) {
	out := make([]any, 1+len(args))
	out[0] = name
	for i, a := range args {
		v, err := argValue(a)
		if err != nil {
			return nil, fmt.Errorf("redis: %s: argument #%d: %w", name, i+1, err)
		}
		out[i+1] = v
	}
	return out, nil
}

func argValue(a any) (any, error) {
	switch v := a.(type) {
	case string, int64, []byte:
		return v, nil
	case float64:
		// Lua's tostring uses %.14g
		return strconv.FormatFloat(v, 'g', 14, 64), nil
	case bool:
		if v {
			return "true", nil
		}
		return "false", nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case nil:
		return "", nil
	case core.Null:
		return nil, errors.New("is ngx.null")
	}
	return nil, fmt.Errorf("must be a string or a number, got %s", luaType(a))
}

func luaType(v any) string {
	switch v.(type) {
	case []any, map[string]any, map[any]any:
		return "a table"
	case core.Handle:
		return "a handle"
	}
	return fmt.Sprintf("%T", v)
}

// cmdResult is the Lua value of one command of a pipeline or transaction:
// the reply, or {false, msg} for an error reply.
func cmdResult(cmd goredis.Cmder) (any, error) {
	c, _ := cmd.(*goredis.Cmd)
	err := cmd.Err()
	switch {
	case err == nil:
		if c == nil {
			return nil, nil
		}
		return convertReply(c.Val()), nil
	case err == goredis.Nil:
		return core.Null{}, nil
	}
	var re goredis.Error
	if errors.As(err, &re) {
		return []any{false, re.Error()}, nil
	}
	return nil, transportError(err)
}
