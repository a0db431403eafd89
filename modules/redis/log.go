package redis

import (
	"context"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// goredis logs pool and sentinel events through a package-level logger;
// send them to nginx's error log (through the core) instead of stderr.
func init() { goredis.SetLogger(logger{}) }

type logger struct{}

func (logger) Printf(_ context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	level := core.LevelInfo
	if strings.Contains(msg, "fail") || strings.Contains(msg, "error") {
		level = core.LevelWarn
	}
	core.Log(level, "redis: "+msg)
}
