// Package optfuzz drives the modules' option parsers from fuzzed bytes, the
// way rffi.open reaches them: the input is decoded as an options frame
// (MessagePack, see core.DecodeOptions), so the seed corpus is realistic
// option tables encoded with core.Encode, and mutations of them keep the
// real keys in reach. Only the modules' fuzz tests import it.
package optfuzz

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// Fuzz adds seeds and runs parse on every input that decodes to a table.
// A refused table must come with an error that starts with prefix and shows
// no password given in it; an accepted one goes to check, which asserts
// what the configuration must satisfy.
func Fuzz[C any](f *testing.F, seeds []core.Options, prefix string,
	parse func(core.Options) (C, error), check func(*testing.T, core.Options, C)) {
	f.Helper()
	for _, m := range seeds {
		b, err := core.Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		opts, err := core.DecodeOptions(frame)
		if err != nil {
			return
		}
		c, err := parse(opts)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, prefix) {
				t.Fatalf("error without the %q prefix: %v", prefix, err)
			}
			if pw, ok := leaked(parse, opts, msg); ok {
				t.Fatalf("the secret %q shows in the error: %v", pw, err)
			}
			return
		}
		check(t, opts, c)
	})
}

// leaked reports a password of opts that msg shows. The text may hold it
// for another reason (a key or a DSN that contains it): it leaks when
// masking it in the table takes occurrences out of the message.
func leaked[C any](parse func(core.Options) (C, error), opts core.Options, msg string) (string, bool) {
	for _, pw := range secrets(opts, "") {
		if n := strings.Count(msg, pw); n > 0 && n > strings.Count(errorOf(parse, mask(opts, "", pw).(core.Options)), pw) {
			return pw, true
		}
	}
	return "", false
}

// errorOf returns the error text of parse(opts), "" when it succeeds.
func errorOf[C any](parse func(core.Options) (C, error), opts core.Options) string {
	c, err := parse(opts)
	if err != nil {
		return err.Error()
	}
	if o, ok := any(c).(core.Object); ok {
		o.Close(context.Background())
	}
	return ""
}

// mask copies v with every password value equal to pw replaced by as many
// '*' (or '#', when pw holds a '*').
func mask(v any, key, pw string) any {
	switch x := v.(type) {
	case string:
		if x == pw && strings.Contains(key, "password") {
			c := "*"
			if strings.Contains(pw, c) {
				c = "#"
			}
			return strings.Repeat(c, len(pw))
		}
	case core.Options:
		out := make(core.Options, len(x))
		for k, it := range x {
			out[k] = mask(it, k, pw)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, it := range x {
			out[i] = mask(it, key, pw)
		}
		return out
	}
	return v
}

// secrets lists the values of keys naming a password, at any depth; short
// ones are left out (they occur in any message by chance).
func secrets(v any, key string) []string {
	var out []string
	switch x := v.(type) {
	case string:
		if len(x) >= 6 && strings.Contains(key, "password") {
			out = append(out, x)
		}
	case map[string]any:
		for k, it := range x {
			out = append(out, secrets(it, k)...)
		}
	case []any:
		for _, it := range x {
			out = append(out, secrets(it, key)...)
		}
	}
	return out
}

// Exact reports whether a duration option given as a positive number of
// milliseconds arrived as exactly that (not wrapped around or truncated);
// options not given, or given otherwise, pass.
func Exact(opts map[string]any, key string, got time.Duration) bool {
	n, ok := opts[key].(int64)
	return !ok || n <= 0 || (got%time.Millisecond == 0 && int64(got/time.Millisecond) == n)
}
