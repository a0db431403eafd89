package grpc

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// rawIODialer connects the way grpc-go's own dialer does (TCP keepalive
// on, with the system's timings) and returns a core.RawIO connection, so
// the transport's reads and writes do not wake the runtime's monitor
// thread (see core/rawio.go).
//
// With a dialer of its own, grpc-go leaves proxying to it; so when the
// worker's environment names an HTTPS proxy (nginx passes only the
// variables its env directive lists), grpc-go keeps its dialer and the
// proxy is used.
func rawIODialer() (grpc.DialOption, bool) {
	if os.Getenv("HTTPS_PROXY") != "" || os.Getenv("https_proxy") != "" {
		return nil, false
	}
	d := &net.Dialer{
		KeepAlive: -1, // keep the system's keepalive timings, as grpc-go does
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
			})
		},
	}
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		network, address := dialTarget(addr)
		return core.DialRawIO(ctx, d, network, address)
	}), true
}

// dialTarget splits what grpc-go gives a custom dialer: "unix://abs",
// "unix:rel", "\x00abstract", or host:port.
func dialTarget(addr string) (network, address string) {
	switch {
	case strings.HasPrefix(addr, "unix://"):
		return "unix", strings.TrimPrefix(addr, "unix://")
	case strings.HasPrefix(addr, "unix:"):
		return "unix", strings.TrimPrefix(addr, "unix:")
	case strings.HasPrefix(addr, "\x00"):
		return "unix", "@" + addr[1:]
	}
	return "tcp", addr
}
