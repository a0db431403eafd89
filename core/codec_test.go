package core

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
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
		{"records key not a string", []byte{0xc7, 4, extRecords, 0x91, 0x01, 0x91, 0x02}},
		{"records cells not a multiple of the keys", []byte{0xc7, 8, extRecords, 0x92, 0xa1, 'a', 0xa1, 'b', 0x93, 1, 2, 3}},
		{"records cells without keys", []byte{0xc7, 3, extRecords, 0x90, 0x91, 0x01}},
		{"records payload longer than its arrays", []byte{0xc7, 6, extRecords, 0x91, 0xa1, 'a', 0x91, 0x01, 0xc0}},
		{"records payload without arrays", []byte{0xc7, 1, extRecords, 0x01}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Decode(c.frame); !errors.Is(err, ErrCodec) {
				t.Fatalf("want a codec error, got %v", err)
			}
		})
	}
}

// recordsFrame encodes rows (cells in key order) as a Records value.
func recordsFrame(t testing.TB, keys []string, rows ...[]any) []byte {
	var e Encoder
	names := make([][]byte, len(keys))
	for i, k := range keys {
		var ke Encoder
		ke.String(k)
		names[i] = ke.Buf
	}
	rec := e.BeginRecords(names)
	for _, r := range rows {
		rec.Next()
		for _, c := range r {
			if err := e.Encode(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	rec.End()
	return e.Buf
}

func TestRecordsDecodeAsMaps(t *testing.T) {
	cases := []struct {
		name  string
		frame []byte
		want  any
	}{
		{"no rows", recordsFrame(t, []string{"id"}), []any{}},
		{"rows", recordsFrame(t, []string{"id", "name"}, []any{int64(1), "a"}, []any{Null{}, []any{int64(2), "b"}}),
			[]any{map[string]any{"id": int64(1), "name": "a"}, map[string]any{"id": Null{}, "name": []any{int64(2), "b"}}}},
		{"a repeated key keeps the last cell", recordsFrame(t, []string{"k", "k"}, []any{int64(1), int64(2)}),
			[]any{map[string]any{"k": int64(2)}}},
		{"inside an array", append([]byte{0x92}, append(recordsFrame(t, []string{"x"}, []any{true}), 0x07)...),
			[]any{[]any{map[string]any{"x": true}}, int64(7)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode(c.frame)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %#v, want %#v", got, c.want)
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
	for _, v := range []any{
		nil, Null{}, true, int64(-1), int64(math.MinInt64), int64(1<<53 + 1), uint64(math.MaxUint64),
		math.Inf(-1), math.NaN(), "s", strings.Repeat("x", 40), []byte{0, 0xff},
		[]any{int64(1), map[string]any{"k": 2.5}}, map[any]any{int64(1): "a", true: Null{}},
		Handle(3), []any{[]any{[]any{}}, map[string]any{}},
	} {
		b, err := Encode(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(recordsFrame(f, []string{"a", "b"}, []any{int64(1), Null{}}, []any{"x", []any{2.5}}))
	f.Add([]byte{0xca, 0x7f, 0xc0, 0, 1})           // a float32 NaN with a payload
	f.Add([]byte{0x82, 0xa1, 'a', 1, 0xa1, 'a', 2}) // a repeated key
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})     // a count the frame cannot hold
	f.Fuzz(func(t *testing.T, frame []byte) {
		v, err := Decode(frame)
		if err != nil {
			if !errors.Is(err, ErrCodec) || err.Error() == "" {
				t.Fatalf("a decoding error must wrap ErrCodec, got %v", err)
			}
			return
		}
		checkDecodedTypes(t, v)
		// whatever decodes must encode again and decode to the same value,
		// bit for bit (NaN payloads and -0 included)
		b, err := Encode(v)
		if err != nil {
			t.Fatalf("re-encoding %#v: %v", v, err)
		}
		v2, err := Decode(b)
		if err != nil {
			t.Fatalf("decoding the re-encoded frame: %v", err)
		}
		if c1, c2 := canonical(v), canonical(v2); c1 != c2 {
			t.Fatalf("unstable:\n%s\n%s", c1, c2)
		}
	})
}

// checkDecodedTypes asserts that v holds only the types the codec
// documents: uint64 only beyond 2^53 (below, every integer is an int64),
// map[any]any only when a key is not a string.
func checkDecodedTypes(t *testing.T, v any) {
	t.Helper()
	switch x := v.(type) {
	case nil, Null, bool, int64, float64, string, []byte, Handle:
	case uint64:
		if x <= maxExact {
			t.Fatalf("uint64 %d decoded where an int64 is due", x)
		}
	case []any:
		for _, it := range x {
			checkDecodedTypes(t, it)
		}
	case map[string]any:
		for _, it := range x {
			checkDecodedTypes(t, it)
		}
	case map[any]any:
		allStrings := true
		for k, it := range x {
			_, isStr := k.(string)
			allStrings = allStrings && isStr
			checkDecodedTypes(t, k)
			checkDecodedTypes(t, it)
		}
		if allStrings {
			t.Fatalf("map[any]any with string keys only: %#v", x)
		}
	default:
		t.Fatalf("undocumented type %T decoded", v)
	}
}

// canonical renders a decoded value as text that two equal values share:
// floats by their bits, maps with their entries sorted.
func canonical(v any) string {
	switch x := v.(type) {
	case float64:
		return fmt.Sprintf("f%016x", math.Float64bits(x))
	case string:
		return "s" + strconv.Quote(x)
	case []byte:
		return "b" + strconv.Quote(string(x))
	case []any:
		parts := make([]string, len(x))
		for i, it := range x {
			parts[i] = canonical(it)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case map[string]any:
		parts := make([]string, 0, len(x))
		for k, it := range x {
			parts = append(parts, canonical(k)+":"+canonical(it))
		}
		sort.Strings(parts)
		return "{" + strings.Join(parts, ",") + "}"
	case map[any]any:
		parts := make([]string, 0, len(x))
		for k, it := range x {
			parts = append(parts, canonical(k)+":"+canonical(it))
		}
		sort.Strings(parts)
		return "<" + strings.Join(parts, ",") + ">"
	}
	return fmt.Sprintf("%T(%#v)", v, v)
}
