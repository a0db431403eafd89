// Package grpc is the runtime behind resty.ffi.grpc: a gRPC client on
// grpc-go for Lua, with messages described by .proto files compiled at run
// time (protocompile) or fetched by server reflection, built as dynamicpb
// messages from plain Lua tables.
//
// Two runtimes are registered:
//
//	"grpc.protos"  (no options)  load, load_string, load_descriptor_set,
//	                              services: the worker's loaded files
//	"grpc"         (target + connection options, see newConn)
//	                              one grpc.ClientConn; ops call, server_stream,
//	                              client_stream, bidi_stream, health, state
//
// The core caches rffi.open by (name, options), so one ClientConn serves
// every request of a worker that connects with the same target and options.
package grpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	// google.rpc error details (BadRequest, RetryInfo, ...) decode by name
	_ "google.golang.org/genproto/googleapis/rpc/errdetails"
)

func init() {
	core.Register("grpc", newConn)
	core.Register("grpc.protos", newProtos)
}

const defaultTimeout = 60 * time.Second

// conn is one grpc.ClientConn with its defaults.
type conn struct {
	target     string
	cc         *grpc.ClientConn
	timeout    time.Duration
	md         metadata.MD
	ready      bool // default wait_for_ready
	out        outOpts
	reflection bool
	local      *registry // files fetched by reflection
	types      *typeResolver
	read       reader

	methods   sync.Map   // methodKey -> *method
	reflectMu sync.Mutex // one reflection exchange at a time
	ctx       context.Context
	cancel    context.CancelFunc
}

type methodKey struct{ service, method string }

// method is a resolved RPC.
type method struct {
	path    string
	in, out protoreflect.MessageDescriptor
	desc    *grpc.StreamDesc
}

// options reads the Lua options table with type checks.
type options struct {
	m    map[string]any
	seen map[string]bool
	err  error
}

func (o *options) get(key string) (any, bool) {
	o.seen[key] = true
	v, ok := o.m[key]
	if ok && v == (core.Null{}) {
		return nil, false
	}
	return v, ok
}

func (o *options) fail(key, want string, v any) {
	if o.err == nil {
		o.err = fmt.Errorf("grpc.connect: option %q must be %s, got %s", key, want, describe(v))
	}
}

// typed reads an option of type T; absent (or ngx.null) gives T's zero value.
func typed[T any](o *options, key, want string) T {
	var zero T
	v, ok := o.get(key)
	if !ok {
		return zero
	}
	x, isT := v.(T)
	if !isT {
		o.fail(key, want, v)
	}
	return x
}

func (o *options) str(key string) string { return typed[string](o, key, "a string") }

func (o *options) boolean(key string) bool { return typed[bool](o, key, "a boolean") }

func (o *options) integer(key string) int64 {
	v, ok := o.get(key)
	if !ok {
		return 0
	}
	i, isInt := toInt64(v)
	if _, isStr := v.(string); !isInt || isStr || i < 0 {
		o.fail(key, "a non-negative integer", v)
	}
	return i
}

// maxMs bounds durations: ~35 years, no overflow once in nanoseconds.
const maxMs = 1 << 40

func (o *options) ms(key string) time.Duration {
	n := o.integer(key)
	if n > maxMs {
		o.fail(key, "at most 2^40 milliseconds", o.m[key])
		return 0
	}
	return time.Duration(n) * time.Millisecond
}

func newConn(raw core.Options) (core.Object, error) {
	o := &options{m: raw, seen: map[string]bool{}}
	c := &conn{target: o.str("target"), timeout: defaultTimeout}
	if c.target == "" {
		return nil, errors.New("grpc.connect: a target (\"host:port\", \"dns:///host:port\", \"unix:/path\") is required")
	}
	var dial []grpc.DialOption

	creds, err := transportCreds(o)
	if err != nil {
		return nil, err
	}
	dial = append(dial, grpc.WithTransportCredentials(creds))
	if d, ok := rawIODialer(); ok {
		dial = append(dial, d)
	}
	if a := o.str("authority"); a != "" {
		dial = append(dial, grpc.WithAuthority(a))
	}
	if ua := o.str("user_agent"); ua != "" {
		dial = append(dial, grpc.WithUserAgent(ua))
	}
	if v, ok := o.get("keepalive"); ok {
		ka, isMap := v.(map[string]any)
		if !isMap {
			o.fail("keepalive", "a table {time=ms, timeout=ms, permit_without_stream=bool}", v)
		} else {
			ko := &options{m: ka, seen: map[string]bool{}}
			dial = append(dial, grpc.WithKeepaliveParams(keepalive.ClientParameters{
				Time:                ko.ms("time"),
				Timeout:             ko.ms("timeout"),
				PermitWithoutStream: ko.boolean("permit_without_stream"),
			}))
			if err := ko.check("keepalive."); err != nil {
				return nil, err
			}
		}
	}
	var callOpts []grpc.CallOption
	if n := o.integer("max_send_size"); n > 0 {
		callOpts = append(callOpts, grpc.MaxCallSendMsgSize(int(n)))
	}
	if n := o.integer("max_recv_size"); n > 0 {
		callOpts = append(callOpts, grpc.MaxCallRecvMsgSize(int(n)))
	}
	if len(callOpts) > 0 {
		dial = append(dial, grpc.WithDefaultCallOptions(callOpts...))
	}
	if sc := o.str("service_config"); sc != "" {
		dial = append(dial, grpc.WithDefaultServiceConfig(sc))
	}
	bo := backoff.DefaultConfig
	customBackoff := false
	if d := o.ms("backoff_base_delay"); d > 0 {
		bo.BaseDelay, customBackoff = d, true
	}
	if d := o.ms("backoff_max_delay"); d > 0 {
		bo.MaxDelay, customBackoff = d, true
	}
	connectTimeout := o.ms("connect_timeout")
	if customBackoff || connectTimeout > 0 {
		if connectTimeout == 0 {
			connectTimeout = 20 * time.Second
		}
		dial = append(dial, grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: connectTimeout}))
	}
	if t := o.ms("timeout"); t > 0 {
		c.timeout = t
	}
	if v, ok := o.get("metadata"); ok {
		md, err := toMetadata(v)
		if err != nil {
			return nil, fmt.Errorf("grpc.connect: option \"metadata\": %w", err)
		}
		c.md = md
	}
	c.ready = o.boolean("wait_for_ready")
	c.reflection = o.boolean("reflection")
	c.out = outOpts{
		emitDefaults: o.boolean("emit_defaults"),
		int64String:  o.boolean("int64_as_string"),
		jsonNames:    o.boolean("json_names"),
		enumNumber:   o.boolean("enum_as_number"),
	}
	if err := o.check(""); err != nil {
		return nil, err
	}
	if c.reflection {
		c.local = newRegistry()
	}
	c.types = newTypeResolver(c.local)
	c.read = reader{types: c.types}
	// grpc.NewClient does no I/O: it connects on the first call
	cc, err := grpc.NewClient(c.target, dial...)
	if err != nil {
		return nil, fmt.Errorf("grpc.connect %s: %w", c.target, err)
	}
	c.cc = cc
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// check reports a type error or an unknown option.
func (o *options) check(prefix string) error {
	if o.err != nil {
		return o.err
	}
	// sorted: the same table gives the same error every time
	for _, k := range slices.Sorted(maps.Keys(o.m)) {
		if !o.seen[k] {
			return fmt.Errorf("grpc.connect: unknown option %q", prefix+k)
		}
	}
	return nil
}

func readPEM(o *options, file, inline string) ([]byte, error) {
	if pem := o.str(inline); pem != "" {
		return []byte(pem), nil
	}
	if path := o.str(file); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("grpc.connect: option %q: %w", file, err)
		}
		return b, nil
	}
	return nil, nil
}

// transportCreds: plaintext unless tls = true or a TLS option is given;
// certificates are verified unless insecure_skip_verify = true.
func transportCreds(o *options) (credentials.TransportCredentials, error) {
	useTLS := o.boolean("tls")
	ca, err := readPEM(o, "ca", "ca_pem")
	if err != nil {
		return nil, err
	}
	cert, err := readPEM(o, "cert", "cert_pem")
	if err != nil {
		return nil, err
	}
	key, err := readPEM(o, "key", "key_pem")
	if err != nil {
		return nil, err
	}
	serverName := o.str("server_name")
	skip := o.boolean("insecure_skip_verify")
	if !useTLS && ca == nil && cert == nil && serverName == "" && !skip {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: skip, MinVersion: tls.VersionTLS12}
	if ca != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, errors.New("grpc.connect: option \"ca\": no PEM certificate found")
		}
		cfg.RootCAs = pool
	}
	if (cert == nil) != (key == nil) {
		return nil, errors.New("grpc.connect: options \"cert\" and \"key\" go together")
	}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("grpc.connect: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}

// toMetadata reads {key = "v"} or {key = {"v1", "v2"}}; keys ending in
// -bin carry binary values.
func toMetadata(v any) (metadata.MD, error) {
	md := metadata.MD{}
	add := func(k string, val any) error {
		k = strings.ToLower(k)
		switch x := val.(type) {
		case string:
			md[k] = append(md[k], x)
		case int64, float64, bool:
			s, _ := core.ToString(x)
			md[k] = append(md[k], s)
		case []any:
			for _, it := range x {
				s, ok := it.(string)
				if !ok {
					return fmt.Errorf("key %q: strings expected, got %s", k, describe(it))
				}
				md[k] = append(md[k], s)
			}
		default:
			return fmt.Errorf("key %q: a string or an array of strings expected, got %s", k, describe(val))
		}
		return nil
	}
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			if err := add(k, val); err != nil {
				return nil, err
			}
		}
	case []any:
		if len(t) > 0 {
			return nil, errors.New("a table of key = value expected, got an array")
		}
	default:
		return nil, fmt.Errorf("a table expected, got %s", describe(v))
	}
	return md, nil
}

// mdToLua: one value -> string, several -> array.
func mdToLua(md metadata.MD) map[string]any {
	out := make(map[string]any, len(md))
	for k, vs := range md {
		if len(vs) == 1 {
			out[k] = vs[0]
		} else {
			out[k] = vs
		}
	}
	return out
}

// Close closes the ClientConn; streams were closed before (the core closes
// handles before runtimes).
func (c *conn) Close(context.Context) error {
	c.cancel()
	return c.cc.Close()
}

// Call serves the connection's operations.
func (c *conn) Call(ctx context.Context, op string, args []any) (any, error) {
	switch op {
	case "call":
		return c.unary(ctx, args)
	case "server_stream", "client_stream", "bidi_stream":
		return c.openStream(ctx, op, args)
	case "health":
		return c.health(ctx, args)
	case "state":
		return c.cc.GetState().String(), nil
	case "connect":
		c.cc.Connect()
		return true, nil
	}
	return nil, core.UnknownOp("grpc", op)
}

// callOpts are the per-call options from Lua.
type callOpts struct {
	timeout     time.Duration
	md          metadata.MD
	ready       bool
	wantHeaders bool
	out         outOpts
}

func (c *conn) callOptions(v any) (callOpts, error) {
	co := callOpts{timeout: c.timeout, md: c.md, ready: c.ready, out: c.out}
	t, ok := v.(map[string]any)
	if !ok {
		if v == nil || v == (core.Null{}) {
			return co, nil
		}
		if arr, isArr := v.([]any); isArr && len(arr) == 0 {
			return co, nil
		}
		return co, fmt.Errorf("call options: a table expected, got %s", describe(v))
	}
	for k, val := range t {
		var err error
		switch k {
		case "timeout":
			ms, ok := toInt64(val)
			if !ok || ms < 0 {
				err = fmt.Errorf("a number of milliseconds expected, got %s", describe(val))
			}
			co.timeout = time.Duration(ms) * time.Millisecond
		case "metadata":
			var md metadata.MD
			if md, err = toMetadata(val); err == nil {
				co.md = metadata.Join(c.md, md)
			}
		case "wait_for_ready":
			co.ready, err = boolOpt(val)
		case "want_headers":
			co.wantHeaders, err = boolOpt(val)
		case "emit_defaults":
			co.out.emitDefaults, err = boolOpt(val)
		case "int64_as_string":
			co.out.int64String, err = boolOpt(val)
		case "json_names":
			co.out.jsonNames, err = boolOpt(val)
		case "enum_as_number":
			co.out.enumNumber, err = boolOpt(val)
		default:
			err = errors.New("unknown option")
		}
		if err != nil {
			return co, fmt.Errorf("call option %q: %w", k, err)
		}
	}
	return co, nil
}

func boolOpt(v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("a boolean expected, got %s", describe(v))
	}
	return b, nil
}

func (co *callOpts) context(ctx context.Context) (context.Context, context.CancelFunc) {
	if len(co.md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, co.md)
	}
	if co.timeout > 0 {
		return context.WithTimeout(ctx, co.timeout)
	}
	return ctx, func() {}
}

// method resolves service/method in the loaded files, or by reflection.
func (c *conn) method(ctx context.Context, service, name any) (*method, error) {
	svc, ok1 := service.(string)
	mname, ok2 := name.(string)
	if !ok1 || !ok2 {
		return nil, errors.New("grpc: service and method names (strings) expected")
	}
	key := methodKey{svc, mname}
	if m, ok := c.methods.Load(key); ok {
		return m.(*method), nil
	}
	d, err := c.types.chain.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil && c.reflection {
		if rerr := c.reflect(ctx, svc); rerr != nil {
			return nil, rerr
		}
		d, err = c.types.chain.FindDescriptorByName(protoreflect.FullName(svc))
	}
	if err != nil {
		hint := "load its .proto with grpc.load or connect with reflection = true"
		return nil, fmt.Errorf("grpc: unknown service %q (%s)", svc, hint)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("grpc: %q is not a service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(mname))
	if md == nil {
		return nil, fmt.Errorf("grpc: service %s has no method %q", svc, mname)
	}
	m := &method{path: "/" + svc + "/" + mname, in: md.Input(), out: md.Output()}
	if md.IsStreamingClient() || md.IsStreamingServer() {
		m.desc = &grpc.StreamDesc{StreamName: mname, ClientStreams: md.IsStreamingClient(), ServerStreams: md.IsStreamingServer()}
	}
	c.methods.Store(key, m)
	return m, nil
}

// unary: args = service, method, request, opts.
func (c *conn) unary(ctx context.Context, args []any) (any, error) {
	m, err := c.method(ctx, arg(args, 0), arg(args, 1))
	if err != nil {
		return nil, err
	}
	if m.desc != nil {
		return nil, fmt.Errorf("grpc: %s is a streaming method: use %s", m.path, streamKind(m.desc))
	}
	co, err := c.callOptions(arg(args, 3))
	if err != nil {
		return nil, err
	}
	req, err := c.read.newMessage(m.in, arg(args, 2))
	if err != nil {
		return nil, err
	}
	ctx, cancel := co.context(ctx)
	defer cancel()
	resp := dynamicpb.NewMessage(m.out)
	var header, trailer metadata.MD
	opts := make([]grpc.CallOption, 0, 3)
	if co.ready {
		opts = append(opts, grpc.WaitForReady(true))
	}
	if co.wantHeaders {
		opts = append(opts, grpc.Header(&header), grpc.Trailer(&trailer))
	}
	if err := c.cc.Invoke(ctx, m.path, req, resp, opts...); err != nil {
		return nil, c.statusError(err, header, trailer, co.wantHeaders)
	}
	raw, err := encodeReply(resp, co.out, c.types)
	if err != nil {
		return nil, fmt.Errorf("grpc: decoding the %s reply: %w", m.path, err)
	}
	if co.wantHeaders {
		return []any{raw, map[string]any{"code": 0, "name": "OK", "headers": mdToLua(header), "trailers": mdToLua(trailer)}}, nil
	}
	return raw, nil
}

func streamKind(d *grpc.StreamDesc) string {
	switch {
	case d.ClientStreams && d.ServerStreams:
		return "bidi_stream"
	case d.ClientStreams:
		return "client_stream"
	case d.ServerStreams:
		return "server_stream"
	}
	return "call"
}

func (c *conn) health(ctx context.Context, args []any) (any, error) {
	svc, _ := arg(args, 0).(string)
	co, err := c.callOptions(arg(args, 1))
	if err != nil {
		return nil, err
	}
	ctx, cancel := co.context(ctx)
	defer cancel()
	var opts []grpc.CallOption
	if co.ready {
		opts = append(opts, grpc.WaitForReady(true))
	}
	resp, err := healthpb.NewHealthClient(c.cc).Check(ctx, &healthpb.HealthCheckRequest{Service: svc}, opts...)
	if err != nil {
		return nil, c.statusError(err, nil, nil, false)
	}
	return resp.GetStatus().String(), nil
}
