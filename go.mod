module github.com/lua-resty-ffi-go/lua-resty-ffi-go

go 1.26.8

require golang.org/x/sys v0.48.0
