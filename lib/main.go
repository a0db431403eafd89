// Command lib is the shared library that nginx workers load with LuaJIT's
// ffi.load: `go build -buildmode=c-shared -o build/resty_ffi_go.so ./lib`.
// It holds the core's C ABI and every module; a user who writes a module
// adds one import here and rebuilds.
package main

import (
	_ "github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	_ "github.com/lua-resty-ffi-go/lua-resty-ffi-go/examples/hello"
	_ "github.com/lua-resty-ffi-go/lua-resty-ffi-go/modules/echo"
	_ "github.com/lua-resty-ffi-go/lua-resty-ffi-go/modules/grpc"
	_ "github.com/lua-resty-ffi-go/lua-resty-ffi-go/modules/kafka"
	_ "github.com/lua-resty-ffi-go/lua-resty-ffi-go/modules/postgres"
	_ "github.com/lua-resty-ffi-go/lua-resty-ffi-go/modules/redis"
)

func main() {}
