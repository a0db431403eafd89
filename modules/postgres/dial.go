package postgres

import (
	"context"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// rawIODial makes every connection of cfg (the pool's, and the LISTEN
// sessions' copies) a core.RawIO one, so its reads and writes do not wake
// the Go runtime's monitor thread (see core/rawio.go). pgx's own dial
// function still dials (connect_timeout and all), and TLS goes on top.
func rawIODial(cfg *pgconn.Config) {
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return core.RawIO(c), nil
	}
}
