-- lua-resty-ffi-go 0.1.0. Building needs Go
-- (go.mod's go line, 1.26.8 or newer) on PATH or GO=/path/to/go, and a C compiler for cgo.
package = "lua-resty-ffi-go"
version = "0.1.0-1"

source = {
    url = "git+https://github.com/lua-resty-ffi-go/lua-resty-ffi-go.git",
    tag = "v0.1.0",
}

description = {
    summary = "Go clients (Redis, PostgreSQL, Kafka, gRPC, your own) inside the nginx worker, for OpenResty and nginx-lua",
    detailed = [[
One Go runtime per nginx worker, loaded after fork, runs calls on goroutines
and hands results back through a shared ring and a one-byte doorbell, so the
event loop never blocks. No nginx rebuild, no patch, no sidecar.]],
    homepage = "https://github.com/lua-resty-ffi-go/lua-resty-ffi-go",
    license = "MIT",
}

-- lua-resty-core (ngx.semaphore) ships with OpenResty and with Debian's
-- lua-resty-core package; LuaRocks cannot install it for nginx, so it is
-- not listed. LuaJIT is required (the FFI).
dependencies = {
    "lua >= 5.1",
}

build = {
    type = "make",
    -- GO=/path/to/go in the environment selects the Go toolchain
    build_target = "build",
    install_target = "install-files",
    install_variables = {
        LUA_LIBDIR = "$(LUADIR)",
        LUA_CLIBDIR = "$(LIBDIR)",
    },
}
