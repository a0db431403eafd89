package optfuzz

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// parseEcho fails with the whole table in its message, as a careless
// parser would.
func parseEcho(opts core.Options) (int, error) {
	return 0, fmt.Errorf("x: bad options %v", opts)
}

// parseKeys fails naming the keys only.
func parseKeys(opts core.Options) (int, error) {
	msg := "x: unknown"
	for k := range opts {
		msg += " " + k
	}
	return 0, errors.New(msg)
}

func TestLeaked(t *testing.T) {
	cases := []struct {
		name  string
		parse func(core.Options) (int, error)
		opts  core.Options
		leak  bool
	}{
		{"password in the message", parseEcho, core.Options{"password": "hunter22"}, true},
		{"nested sasl password", parseEcho, core.Options{"sasl": core.Options{"password": "hunter22"}}, true},
		{"short passwords are not checked", parseEcho, core.Options{"password": "abc"}, false},
		{"only keys in the message", parseKeys, core.Options{"password": "hunter22"}, false},
		{"a key that contains the password", parseKeys, core.Options{"password": "000000", "0000000": true}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.parse(c.opts)
			if _, got := leaked(c.parse, c.opts, err.Error()); got != c.leak {
				t.Fatalf("leaked = %v, want %v (%v)", got, c.leak, err)
			}
		})
	}
}
