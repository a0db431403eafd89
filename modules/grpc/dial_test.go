package grpc

import "testing"

func TestDialTarget(t *testing.T) {
	cases := []struct{ in, network, address string }{
		{"127.0.0.1:15051", "tcp", "127.0.0.1:15051"},
		{"[::1]:443", "tcp", "[::1]:443"},
		{"unix:///run/grpc.sock", "unix", "/run/grpc.sock"},
		{"unix:run/grpc.sock", "unix", "run/grpc.sock"},
		{"\x00abstract-name", "unix", "@abstract-name"},
	}
	for _, c := range cases {
		network, address := dialTarget(c.in)
		if network != c.network || address != c.address {
			t.Errorf("dialTarget(%q) = %q, %q; want %q, %q", c.in, network, address, c.network, c.address)
		}
	}
}
