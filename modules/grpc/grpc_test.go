package grpc

import (
	"context"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

const plainAddr = "127.0.0.1:15051"

var protoDir, _ = filepath.Abs("../../t/servers/grpc/proto")

// needServer skips (or fails in CI) when the test server is not running.
func needServer(t testing.TB) {
	t.Helper()
	c, err := net.DialTimeout("tcp", plainAddr, time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("gRPC test server not reachable on %s (t/servers/grpc/ctl start): %v", plainAddr, err)
		}
		t.Skipf("SKIPPING: gRPC test server not reachable on %s; start it with t/servers/grpc/ctl start", plainAddr)
	}
	c.Close()
	if _, err := compileFiles(context.Background(), []string{"rffitest/v1/test.proto"}, []string{protoDir}, nil); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, opts map[string]any) *conn {
	t.Helper()
	if opts["target"] == nil {
		opts["target"] = plainAddr
	}
	obj, err := newConn(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obj.Close(context.Background()) })
	return obj.(*conn)
}

// lua turns a result into what Lua would decode (through the codec).
func lua(t *testing.T, v any) any {
	t.Helper()
	enc := &core.Encoder{}
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	out, err := core.Decode(enc.Buf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func call(t *testing.T, c *conn, method string, req any, opts any) (any, error) {
	t.Helper()
	res, err := c.Call(context.Background(), "call", []any{"rffitest.v1.TestService", method, req, opts})
	if err != nil {
		return nil, err
	}
	return lua(t, res), nil
}

func TestEchoAllTypes(t *testing.T) {
	needServer(t)
	c := open(t, map[string]any{})
	req := allTypesRequest()
	got, err := call(t, c, "Echo", req, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := got.(map[string]any)
	want := map[string]any{
		"f_double": 1.25, "f_float": 0.1, "f_int32": int64(-7), "f_int64": int64(math.MinInt64),
		"f_uint32": int64(4294967295), "f_uint64": uint64(math.MaxUint64), "f_fixed64": uint64(math.MaxUint64),
		"f_sint64": int64(-1 << 60), "f_bytes": []byte("\x00\xff\x01"), "f_enum": "COLOR_GREEN",
		"c_int64": int64(42), "o_int32": int64(0), "w_timestamp": "2024-02-03T04:05:06.123Z",
		"w_duration": "-1.500s", "w_value": core.Null{}, "w_int64": int64(-5), "w_bool": false,
		"w_string": "", "w_bytes": []byte("\x00"),
	}
	for k, w := range want {
		if !reflect.DeepEqual(m[k], w) {
			t.Errorf("%s: got %#v, want %#v", k, m[k], w)
		}
	}
	if s := m["w_struct"].(map[string]any)["k"].([]any); len(s) != 4 || s[3] != (core.Null{}) || s[0] != float64(1) {
		t.Errorf("w_struct: %#v", s)
	}
	if a := m["w_any"].(map[string]any); a["@type"] != "type.googleapis.com/rffitest.v1.Inner" || a["name"] != "packed" {
		t.Errorf("w_any: %#v", a)
	}
	if mm := m["m_message"].(map[any]any); mm[int64(1)].(map[string]any)["name"] != "one" {
		t.Errorf("m_message: %#v", mm)
	}
	if _, ok := m["f_string"]; !ok {
		t.Errorf("f_string missing")
	}
	if r := m["r_enum"].([]any); r[0] != "COLOR_RED" || r[1] != "COLOR_BLUE" {
		t.Errorf("r_enum: %#v", r)
	}
}

func TestDefaultsAndOptions(t *testing.T) {
	needServer(t)
	c := open(t, map[string]any{})
	got, err := call(t, c, "Echo", map[string]any{"f_int64": int64(5)}, map[string]any{"emit_defaults": true, "int64_as_string": true, "json_names": true})
	if err != nil {
		t.Fatal(err)
	}
	m := got.(map[string]any)
	if m["fInt64"] != "5" || m["fInt32"] != int64(0) || m["fEnum"] != "COLOR_UNSPECIFIED" || m["fString"] != "" {
		t.Errorf("defaults: %#v", m)
	}
	if _, ok := m["rInt32"].([]any); !ok {
		t.Errorf("empty repeated should be an array: %#v", m["rInt32"])
	}
	if _, ok := m["fMessage"]; ok {
		t.Errorf("unset message emitted")
	}
	got, _ = call(t, c, "Echo", map[string]any{}, nil)
	if len(got.(map[string]any)) != 0 {
		t.Errorf("empty message: %#v", got)
	}
}

func TestWrongFieldType(t *testing.T) {
	needServer(t)
	c := open(t, map[string]any{})
	cases := map[string]map[string]any{
		`field f_int32: int32 (integer) expected, got string "x"`: {"f_int32": "x"},
		`has no field "nope"`:               {"nope": int64(1)},
		`field f_message.children[2].value`: {"f_message": map[string]any{"children": []any{map[string]any{}, map[string]any{"value": true}}}},
		`oneof choice: both`:                {"c_int64": int64(1), "c_string": "x"},
		`has no value "PURPLE"`:             {"f_enum": "PURPLE"},
		`out of range`:                      {"f_int32": int64(1 << 40)},
	}
	for want, req := range cases {
		_, err := call(t, c, "Echo", req, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want %q", req, err, want)
		}
	}
}

func TestStatusAndDeadline(t *testing.T) {
	needServer(t)
	c := open(t, map[string]any{})
	_, err := call(t, c, "Fail", map[string]any{"code": int64(5), "message": "gone", "detail": map[string]any{"name": "d"}}, nil)
	se, ok := err.(*statusError)
	if !ok || se.Error() != "NOT_FOUND: gone" {
		t.Fatalf("got %v", err)
	}
	d := lua(t, se.Detail()).(map[string]any)
	if d["name"] != "NOT_FOUND" || d["code"] != int64(5) || d["details"].([]any)[0].(map[string]any)["name"] != "d" {
		t.Errorf("detail: %#v", d)
	}
	id := "go-" + time.Now().Format(time.RFC3339Nano)
	_, err = call(t, c, "Sleep", map[string]any{"id": id, "ms": int64(5000)}, map[string]any{"timeout": int64(100)})
	if err == nil || !strings.HasPrefix(err.Error(), "DEADLINE_EXCEEDED") {
		t.Fatalf("got %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	got, _ := call(t, c, "Canceled", map[string]any{"id": id}, nil)
	if got.(map[string]any)["seen"] != true {
		t.Errorf("server did not see the cancel: %#v", got)
	}
}

func TestMetadata(t *testing.T) {
	needServer(t)
	c := open(t, map[string]any{"metadata": map[string]any{"x-default": "d"}})
	res, err := c.Call(context.Background(), "call", []any{"rffitest.v1.TestService", "EchoMetadata",
		map[string]any{"headers": map[string]any{"h1": "v1"}, "trailers": map[string]any{"t1": "v2"}},
		map[string]any{"metadata": map[string]any{"x-call": []any{"a", "b"}}, "want_headers": true}})
	if err != nil {
		t.Fatal(err)
	}
	pair := lua(t, res).([]any)
	recv := pair[0].(map[string]any)["received"].(map[string]any)
	if recv["x-call"] != "a,b" || recv["x-default"] != "d" {
		t.Errorf("received: %#v", recv)
	}
	st := pair[1].(map[string]any)
	if st["headers"].(map[string]any)["h1"] != "v1" || st["trailers"].(map[string]any)["t1"] != "v2" {
		t.Errorf("headers/trailers: %#v", st)
	}
}

func TestStreams(t *testing.T) {
	needServer(t)
	c := open(t, map[string]any{})
	ctx := context.Background()
	obj, err := c.Call(ctx, "server_stream", []any{"rffitest.v1.TestService", "ServerStream", map[string]any{"count": int64(1000), "payload": "p"}, nil})
	if err != nil {
		t.Fatal(err)
	}
	s := obj.(*stream)
	n := 0
	for {
		v, err := s.Call(ctx, "recv", nil)
		if err == core.ErrEOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if got := lua(t, v).(map[string]any)["seq"]; got != int64(n) {
			t.Fatalf("seq %v, want %d", got, n)
		}
	}
	if n != 1000 {
		t.Errorf("got %d messages", n)
	}
	s.Close(ctx)

	obj, err = c.Call(ctx, "client_stream", []any{"rffitest.v1.TestService", "ClientStream", nil})
	if err != nil {
		t.Fatal(err)
	}
	s = obj.(*stream)
	for i := 1; i <= 100; i++ {
		if _, err := s.Call(ctx, "send", []any{map[string]any{"seq": int64(i), "payload": "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Call(ctx, "close_send", nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := lua(t, res).(map[string]any); m["count"] != int64(100) || m["seq_sum"] != int64(5050) {
		t.Errorf("summary %#v", m)
	}
	s.Close(ctx)

	obj, err = c.Call(ctx, "bidi_stream", []any{"rffitest.v1.TestService", "Bidi", nil})
	if err != nil {
		t.Fatal(err)
	}
	s = obj.(*stream)
	for i := 1; i <= 10; i++ {
		if _, err := s.Call(ctx, "send", []any{map[string]any{"seq": int64(i)}}); err != nil {
			t.Fatal(err)
		}
		v, err := s.Call(ctx, "recv", nil)
		if err != nil || lua(t, v).(map[string]any)["seq"] != int64(i) {
			t.Fatalf("bidi %d: %v %v", i, v, err)
		}
	}
	s.Call(ctx, "close_send", nil)
	if _, err := s.Call(ctx, "recv", nil); err != core.ErrEOF {
		t.Errorf("bidi end: %v", err)
	}
	s.Close(ctx)
}

func TestReflectionAndHealth(t *testing.T) {
	needServer(t)
	// a fresh set of loaded files, so only reflection can know the service
	saved := loaded
	loaded = newRegistry()
	defer func() { loaded = saved }()
	c := open(t, map[string]any{"reflection": true})
	if _, err := call(t, c, "SayHello", map[string]any{"name": "r"}, nil); err != nil {
		t.Fatal(err)
	}
	// a service only reflection knows: the health service's descriptor
	got, err := c.Call(context.Background(), "health", []any{"rffitest.v1.TestService"})
	if err != nil || got != "SERVING" {
		t.Fatalf("health: %v %v", got, err)
	}
	if err := c.reflect(context.Background(), "rffitest.v1.TestService"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.local.FindDescriptorByName("rffitest.v1.AllTypes"); err != nil {
		t.Errorf("reflection did not fetch the file: %v", err)
	}
}

func TestTLS(t *testing.T) {
	needServer(t)
	run := os.Getenv("RFFI_RUN")
	if run == "" {
		run, _ = filepath.Abs("../../.run")
	}
	tlsDir := filepath.Join(run, "grpc", "tls")
	c := open(t, map[string]any{"target": "127.0.0.1:15052", "ca": filepath.Join(tlsDir, "ca.pem"),
		"cert": filepath.Join(tlsDir, "client.pem"), "key": filepath.Join(tlsDir, "client.key")})
	got, err := call(t, c, "EchoMetadata", map[string]any{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.(map[string]any)["peer_cert_cn"] != "rffi client" {
		t.Errorf("client cert not seen: %#v", got)
	}
	bad := open(t, map[string]any{"target": "127.0.0.1:15052", "ca": filepath.Join(tlsDir, "other-ca.pem")})
	_, err = call(t, bad, "SayHello", map[string]any{"name": "x"}, map[string]any{"timeout": int64(3000)})
	if err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("wrong CA: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := compileFiles(context.Background(), []string{"bad.proto"}, nil, map[string]string{"bad.proto": "syntax = \"proto3\";\nmessage X {\n  int32 a = 1\n}\n"})
	if err == nil || !strings.Contains(err.Error(), "bad.proto:4:") {
		t.Errorf("syntax error: %v", err)
	}
	_, err = newConn(map[string]any{"target": "x:1", "bogus": true})
	if err == nil || !strings.Contains(err.Error(), `unknown option "bogus"`) {
		t.Errorf("unknown option: %v", err)
	}
}

func TestServerRestart(t *testing.T) {
	needServer(t)
	admin := open(t, map[string]any{})
	c := open(t, map[string]any{"target": "127.0.0.1:15053", "backoff_max_delay": int64(300)})
	if _, err := call(t, c, "SayHello", map[string]any{"name": "a"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, admin, "Bounce", map[string]any{"down_ms": int64(1000)}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_, err := call(t, c, "SayHello", map[string]any{"name": "b"}, map[string]any{"timeout": int64(500)})
	if err == nil || !strings.HasPrefix(err.Error(), "UNAVAILABLE") {
		t.Fatalf("while down: %v", err)
	}
	got, err := call(t, c, "SayHello", map[string]any{"name": "c"}, map[string]any{"timeout": int64(5000), "wait_for_ready": true})
	if err != nil || got.(map[string]any)["message"] != "Hello c" {
		t.Fatalf("after restart: %v %v", got, err)
	}
}

// An older server with only grpc.reflection.v1alpha: reflection falls back.
func TestReflectionV1Alpha(t *testing.T) {
	needServer(t) // for the compiled test files
	files := newRegistry()
	fd, err := loaded.FindFileByPath("rffitest/v1/test.proto")
	if err != nil {
		t.Fatal(err)
	}
	if err := files.add(fd); err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	opts := reflection.ServerOptions{Services: srv, DescriptorResolver: chain{files, protoregistry.GlobalFiles}}
	reflectionv1alpha.RegisterServerReflectionServer(srv, reflection.NewServer(opts))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()

	saved := loaded
	loaded = newRegistry()
	defer func() { loaded = saved }()
	c := open(t, map[string]any{"target": ln.Addr().String(), "reflection": true})
	if _, err := c.method(context.Background(), "rffitest.v1.TestService", "Echo"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.local.FindDescriptorByName("rffitest.v1.AllTypes"); err != nil {
		t.Errorf("v1alpha reflection did not fetch the file: %v", err)
	}
}

func TestDescriptorSet(t *testing.T) {
	needServer(t)
	fd, err := loaded.FindFileByPath("rffitest/v1/test.proto")
	if err != nil {
		t.Fatal(err)
	}
	// the file alone: its imports (well-known types) resolve from Go's registry
	set := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{protodesc.ToFileDescriptorProto(fd)}}
	saved := loaded
	loaded = newRegistry()
	defer func() { loaded = saved }()
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadDescriptorSet(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []string{"rffitest.v1.TestService"}) {
		t.Errorf("services: %v", got)
	}
	if _, err := loaded.FindDescriptorByName("rffitest.v1.AllTypes"); err != nil {
		t.Error(err)
	}
}

func TestDurationNumbers(t *testing.T) {
	needServer(t)
	c := open(t, map[string]any{})
	for in, want := range map[float64]string{-1.5: "-1.500s", 2.25: "2.250s", -0.001: "-0.001s", 0.5: "0.500s"} {
		got, err := call(t, c, "Echo", map[string]any{"w_duration": in, "w_timestamp": in}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := got.(map[string]any)["w_duration"]; d != want {
			t.Errorf("duration %v: got %v, want %s", in, d, want)
		}
	}
}
