package core

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestCodecRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		in   any
		want any // nil means: same as in
	}{
		{"nil", nil, nil},
		{"null", Null{}, nil},
		{"true", true, nil},
		{"false", false, nil},
		{"small int", int64(5), nil},
		{"negative fixint", int64(-7), nil},
		{"int8", int64(-100), nil},
		{"int16", int64(-30000), nil},
		{"int32", int64(-2000000000), nil},
		{"int64 min", int64(math.MinInt64), nil},
		{"uint8", int64(200), nil},
		{"uint16", int64(60000), nil},
		{"uint32", int64(4000000000), nil},
		{"2^53", int64(1 << 53), nil},
		{"int64 beyond 2^53", int64(1<<62 + 12345), nil},
		{"uint64 max", uint64(math.MaxUint64), nil},
		{"float", 3.25, nil},
		{"float32 widens", float32(1.5), 1.5},
		{"empty string", "", nil},
		{"binary string", "a\x00b\xffc", nil},
		{"long string", strings.Repeat("x", 70000), nil},
		{"bytes", []byte{0, 1, 2}, nil},
		{"array", []any{int64(1), "two", nil, Null{}}, nil},
		{"empty array", []any{}, nil},
		{"map", map[string]any{"a": int64(1), "b": []any{true}}, nil},
		{"empty map", map[string]any{}, nil},
		{"mixed keys", map[any]any{int64(1): "x", "k": "y"}, nil},
		{"handle", Handle(42), nil},
		{"string slice", []string{"a", "b"}, []any{"a", "b"}},
		{"int slice via reflection", []int{1, 2}, []any{int64(1), int64(2)}},
		{"string map via reflection", map[string]string{"k": "v"}, map[string]any{"k": "v"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Encode(c.in)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := c.want
			if want == nil {
				want = c.in
			}
			if c.name == "nil" {
				want = nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip: got %#v, want %#v", got, want)
			}
		})
	}
}

func TestDecodeRejectsMalformedFrames(t *testing.T) {
	cases := []struct {
		name  string
		frame []byte
	}{
		{"empty", nil},
		{"truncated str", []byte{0xa5, 'a', 'b'}},
		{"truncated uint32", []byte{0xce, 0, 0}},
		{"array claims more than it has", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"map claims more than it has", []byte{0xdf, 0x7f, 0xff, 0xff, 0xff, 0x01}},
		{"bin claims 4 GiB", []byte{0xc6, 0xff, 0xff, 0xff, 0xff}},
		{"unknown type byte", []byte{0xc1}},
		{"unknown extension", []byte{0xd4, 0x05, 0x00}},
		{"trailing bytes", []byte{0x01, 0x02}},
		{"nested too deep", bytes.Repeat([]byte{0x91}, maxDepth+5)},
		{"map key is an array", []byte{0x81, 0x90, 0x01}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Decode(c.frame); !errors.Is(err, ErrCodec) {
				t.Fatalf("want a codec error, got %v", err)
			}
		})
	}
}

func TestDecodeArgs(t *testing.T) {
	b, _ := Encode([]any{"get", int64(1)})
	args, err := DecodeArgs(b)
	if err != nil || len(args) != 2 || args[0] != "get" {
		t.Fatalf("DecodeArgs = %v, %v", args, err)
	}
	if args, err := DecodeArgs(nil); err != nil || args != nil {
		t.Fatalf("empty frame: %v, %v", args, err)
	}
	b, _ = Encode("not an array")
	if _, err := DecodeArgs(b); err == nil {
		t.Fatal("a scalar frame must be refused")
	}
}

func TestEncodeRefusesObjectsWithoutRegistry(t *testing.T) {
	var e Encoder
	if err := e.Encode(&fakeObject{}); !errors.Is(err, ErrCodec) {
		t.Fatalf("want a codec error, got %v", err)
	}
	e = Encoder{Register: func(Object) (Handle, error) { return 7, nil }}
	if err := e.Encode([]any{&fakeObject{}}); err != nil {
		t.Fatal(err)
	}
	v, _ := Decode(e.Buf)
	if !reflect.DeepEqual(v, []any{Handle(7)}) {
		t.Fatalf("got %#v", v)
	}
}

func FuzzDecode(f *testing.F) {
	for _, v := range []any{nil, Null{}, int64(-1), "s", []any{int64(1), map[string]any{"k": 2.5}}, Handle(3)} {
		b, _ := Encode(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		v, err := Decode(frame)
		if err != nil {
			return
		}
		// whatever decodes must encode again and decode to the same value
		b, err := Encode(v)
		if err != nil {
			t.Fatalf("re-encoding %#v: %v", v, err)
		}
		v2, err := Decode(b)
		if err != nil {
			t.Fatalf("decoding the re-encoded frame: %v", err)
		}
		if !reflect.DeepEqual(normalizeNaN(v), normalizeNaN(v2)) {
			t.Fatalf("unstable: %#v vs %#v", v, v2)
		}
	})
}

// normalizeNaN makes NaN comparable for the fuzz check, at any depth.
func normalizeNaN(v any) any {
	switch x := v.(type) {
	case float64:
		if x != x {
			return "NaN"
		}
	case []any:
		out := make([]any, len(x))
		for i, it := range x {
			out[i] = normalizeNaN(it)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, it := range x {
			out[k] = normalizeNaN(it)
		}
		return out
	case map[any]any:
		out := make(map[any]any, len(x))
		for k, it := range x {
			out[normalizeNaN(k)] = normalizeNaN(it)
		}
		return out
	}
	return v
}
