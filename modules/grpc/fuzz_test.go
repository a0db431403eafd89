package grpc

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/internal/optfuzz"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// FuzzGrpcConnOptions feeds options tables to newConn, which does no I/O
// (grpc.NewClient connects on the first call). An accepted table gives a
// connection with a positive default timeout, exactly the one asked for.
func FuzzGrpcConnOptions(f *testing.F) {
	optfuzz.Fuzz(f, []core.Options{
		{"target": "127.0.0.1:15051", "timeout": int64(2000), "wait_for_ready": true, "emit_defaults": true},
		{"target": "dns:///localhost:15052", "tls": true, "server_name": "localhost", "insecure_skip_verify": true},
		{"target": "unix:/tmp/grpc.sock", "authority": "svc", "user_agent": "ua", "reflection": true},
		{"target": "h:1", "keepalive": map[string]any{"time": int64(10000), "timeout": int64(1000), "permit_without_stream": true}},
		{"target": "h:1", "metadata": map[string]any{"X-Key": "v", "multi": []any{"a", "b"}, "n-bin": "\x00\x01"}},
		{"target": "h:1", "max_send_size": int64(1 << 20), "max_recv_size": int64(4 << 20), "connect_timeout": int64(3000)},
		{"target": "h:1", "backoff_base_delay": int64(100), "backoff_max_delay": int64(1000), "json_names": true},
		{"target": "h:1", "service_config": `{"loadBalancingConfig":[{"round_robin":{}}]}`, "int64_as_string": true},
		{"target": "h:1", "timeout": int64(1) << 60, "ca_pem": "not a certificate"},
		{"target": ""},
	}, "grpc.connect", newConn, func(t *testing.T, opts core.Options, obj core.Object) {
		c := obj.(*conn)
		defer c.Close(context.Background())
		if c.target == "" || c.cc == nil || c.types == nil || c.read.types == nil {
			t.Fatalf("incomplete connection: %+v", c)
		}
		if c.timeout <= 0 || !optfuzz.Exact(opts, "timeout", c.timeout) {
			t.Fatalf("timeout %v from %#v", c.timeout, opts["timeout"])
		}
		for k := range c.md {
			if k != strings.ToLower(k) {
				t.Fatalf("metadata key %q not lowercased", k)
			}
		}
		if c.reflection != (c.local != nil) {
			t.Fatal("reflection without its registry")
		}
	})
}

// requestTypes are the input types of the test service's methods, from
// test.proto compiled as grpc.load compiles it.
var requestTypes = sync.OnceValues(func() ([]protoreflect.MessageDescriptor, error) {
	if _, err := compileFiles(context.Background(), []string{"rffitest/v1/test.proto"}, []string{protoDir}, nil); err != nil {
		return nil, err
	}
	d, err := loaded.FindDescriptorByName("rffitest.v1.TestService")
	if err != nil {
		return nil, err
	}
	var out []protoreflect.MessageDescriptor
	seen := map[protoreflect.FullName]bool{}
	methods := d.(protoreflect.ServiceDescriptor).Methods()
	for i := 0; i < methods.Len(); i++ {
		in := methods.Get(i).Input()
		if !seen[in.FullName()] {
			seen[in.FullName()] = true
			out = append(out, in)
		}
	}
	return out, nil
})

// FuzzGrpcFromLua decodes the input as a Lua value and converts it into
// one of the test service's request types (typ picks which) as a call
// does. A refused value gets an error naming the request type; an accepted
// one must marshal, and come back as the same message after the trip a
// reply takes to Lua (encodeMessage with the output options out picks,
// decoded as Lua sees it) and back through the conversion.
func FuzzGrpcFromLua(f *testing.F) {
	types, err := requestTypes()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct {
		typ, out uint8
		v        any
	}{
		{0, 0, allTypesRequest()},
		{0, 15, allTypesRequest()},
		{0, 2, map[string]any{"f_int64": "9223372036854775807", "m_uint64": map[string]any{"18446744073709551615": "max"}}},
		{0, 1, map[string]any{"w_duration": 1.999999999, "w_timestamp": -1.5, "f_float": 3.4e38, "f_double": -0.0}},
		{0, 0, map[string]any{"w_duration": "5.-1s"}},
		{0, 0, map[string]any{"w_struct": map[string]any{"s": "\xff"}}},
		{0, 0, map[string]any{"w_any": map[string]any{"@type": "\xff", "value": ""}}},
		{0, 0, map[string]any{"w_timestamp": 1e300, "w_duration": -1e300}},
		{0, 4, map[string]any{"w_value": []any{map[string]any{"a": []any{}}, 1.5, false}, "w_list": []any{"x", core.Null{}}}},
		{0, 0, map[string]any{"w_any": map[string]any{"@type": "type.googleapis.com/unknown.Type", "value": "\x08\x01"}}},
		{0, 8, map[string]any{"w_any": map[string]any{"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1.5s"}}},
		{0, 0, map[string]any{"c_string": "a", "c_int64": int64(1)}},
		{0, 8, map[string]any{"f_enum": int64(99), "r_enum": []any{"COLOR_RED", int64(7)}, "m_enum": map[string]any{"k": int64(2)}}},
		{0, 0, map[string]any{"m_message": map[any]any{int64(1): map[string]any{"children": []any{map[string]any{}}}}}},
		{1, 0, map[string]any{"name": "world"}},
		{2, 0, map[string]any{"headers": map[string]any{"a": "b"}, "trailers": map[string]any{}}},
		{3, 0, map[string]any{"id": "x", "ms": int64(10)}},
		{5, 0, map[string]any{"code": int64(3), "message": "bad", "detail": map[string]any{"name": "d", "color": "COLOR_BLUE"}}},
		{6, 0, map[string]any{"count": 2.0, "payload": "p", "interval_ms": "5"}},
		{7, 2, map[string]any{"seq": int64(1) << 60, "payload": ""}},
		{8, 0, []any{}},
	} {
		b, err := core.Encode(s.v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s.typ, s.out, b)
	}
	f.Fuzz(func(t *testing.T, typ, out uint8, frame []byte) {
		v, err := core.Decode(frame)
		if err != nil {
			return
		}
		md := types[int(typ)%len(types)]
		o := outOpts{emitDefaults: out&1 != 0, int64String: out&2 != 0, jsonNames: out&4 != 0, enumNumber: out&8 != 0}
		r := reader{types: newTypeResolver(nil)}
		m, err := r.newMessage(md, v)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "request "+string(md.FullName())+": ") {
				t.Fatalf("error without the request type: %v", err)
			}
			return
		}
		checkWellKnown(t, m)
		wire, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatalf("an accepted %s does not marshal: %v", md.FullName(), err)
		}
		back := dynamicpb.NewMessage(md)
		if err := proto.Unmarshal(wire, back); err != nil || !proto.Equal(m, back) {
			t.Fatalf("the wire form does not unmarshal to the same message (%v)", err)
		}
		raw, err := encodeMessage(m, o, r.types)
		if err != nil {
			t.Fatalf("an accepted %s does not convert back to Lua: %v", md.FullName(), err)
		}
		lv, err := core.Decode(raw)
		if err != nil {
			t.Fatalf("encodeMessage wrote a frame the codec refuses: %v", err)
		}
		m2, err := r.newMessage(md, asLua(lv))
		if err != nil {
			t.Fatalf("%s as Lua got it (%#v) is refused: %v", md.FullName(), lv, err)
		}
		if !proto.Equal(m, m2) {
			t.Fatalf("the round trip through Lua changed the message:\n%v\n%v", m, m2)
		}
	})
}

// checkWellKnown asserts the rules of the protobuf JSON mapping on every
// Timestamp and Duration in m: in range, nanos below a second, a
// Duration's seconds and nanos of one sign.
func checkWellKnown(t *testing.T, m protoreflect.Message) {
	t.Helper()
	get := func(name string) int64 { return m.Get(byName(m, name)).Int() }
	switch wellKnown(m.Descriptor().FullName()) {
	case wktTimestamp:
		if s, n := get("seconds"), get("nanos"); s < minTimestamp || s > maxTimestamp || n < 0 || n >= 1e9 {
			t.Fatalf("invalid Timestamp %d s %d ns", s, n)
		}
	case wktDuration:
		if s, n := get("seconds"), get("nanos"); s < -maxDuration || s > maxDuration || n <= -1e9 || n >= 1e9 ||
			(s > 0 && n < 0) || (s < 0 && n > 0) {
			t.Fatalf("invalid Duration %d s %d ns", s, n)
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				checkWellKnown(t, v.List().Get(i).Message())
			}
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Message() != nil {
					checkWellKnown(t, mv.Message())
				}
				return true
			})
		default:
			checkWellKnown(t, v.Message())
		}
		return true
	})
}

// asLua turns decoded values into what Lua would send back: a msgpack bin
// is a Lua string.
func asLua(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case []any:
		for i, it := range x {
			x[i] = asLua(it)
		}
	case map[string]any:
		for k, it := range x {
			x[k] = asLua(it)
		}
	case map[any]any:
		for k, it := range x {
			x[k] = asLua(it)
		}
	}
	return v
}

// allTypesRequest sets every field kind of AllTypes (as TestEchoAllTypes).
func allTypesRequest() map[string]any {
	return map[string]any{
		"f_double": 1.25, "f_float": 0.1, "f_int32": int64(-7), "f_int64": "-9223372036854775808",
		"f_uint32": int64(4294967295), "f_uint64": uint64(18446744073709551615), "f_sint32": int64(-3),
		"f_sint64": int64(-1 << 60), "f_fixed32": int64(7), "f_fixed64": "18446744073709551615",
		"f_sfixed32": int64(-5), "f_sfixed64": int64(1 << 62), "f_bool": true, "f_string": "héllo",
		"f_bytes": "\x00\xff\x01", "f_enum": "COLOR_GREEN", "fMessage": map[string]any{"name": "n", "value": int64(3)},
		"r_int32": []any{int64(1), int64(2)}, "r_int64": []any{"9007199254740993"}, "r_enum": []any{int64(1), "COLOR_BLUE"},
		"r_message": []any{map[string]any{"name": "a"}, map[string]any{}}, "r_bool": []any{true}, "r_bytes": []any{"\x00"},
		"r_uint64": []any{uint64(1 << 63)}, "r_double": []any{0.5}, "r_string": []any{"s"},
		"m_string": map[string]any{"a": "b"}, "m_message": []any{map[string]any{"name": "one"}},
		"m_int64": map[any]any{int64(5): int64(6)}, "m_bool": map[any]any{true: "\x01"},
		"c_int64": int64(42), "o_int32": int64(0), "o_string": "",
		"w_timestamp": "2024-02-03T04:05:06.123Z", "w_duration": "-1.5s",
		"w_struct": map[string]any{"k": []any{int64(1), "x", true, core.Null{}}}, "w_value": core.Null{},
		"w_int64": "-5", "w_uint64": int64(5), "w_int32": int64(-1), "w_uint32": int64(1), "w_double": 2.5,
		"w_float": 1.5, "w_bool": false, "w_string": "", "w_bytes": "\x00",
		"w_any":   map[string]any{"@type": "type.googleapis.com/rffitest.v1.Inner", "name": "packed"},
		"w_empty": map[string]any{},
	}
}
