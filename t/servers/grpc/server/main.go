// Command server is the gRPC test server of lua-resty-ffi-go. It compiles
// t/servers/grpc/proto/rffitest/v1/test.proto at start (protocompile, no
// generated code) and serves rffitest.v1.TestService with dynamic messages,
// plus server reflection and grpc.health.v1, on:
//
//	-plain  127.0.0.1:15051  plaintext
//	-tls    127.0.0.1:15052  TLS (-cert/-key; client certificates verified
//	                         against -client-ca when a client sends one)
//	-bounce 127.0.0.1:15053  plaintext, stopped and restarted by Bounce
//	-unix   <path>           plaintext on a Unix socket
//
// t/servers/grpc/ctl starts and stops it.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bufbuild/protocompile"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
)

const protoFile = "rffitest/v1/test.proto"
const serviceName = "rffitest.v1.TestService"

type server struct {
	files *protoregistry.Files
	svc   protoreflect.ServiceDescriptor

	mu       sync.Mutex
	sleeps   map[string]string // id -> "running" | "canceled" | "finished"
	bounceMu sync.Mutex
	bounce   *listener
}

func main() {
	protoDir := flag.String("proto", "", "directory holding "+protoFile)
	plain := flag.String("plain", "127.0.0.1:15051", "plaintext address")
	tlsAddr := flag.String("tls", "127.0.0.1:15052", "TLS address (empty: none)")
	bounce := flag.String("bounce", "127.0.0.1:15053", "bounce address (empty: none)")
	unixPath := flag.String("unix", "", "Unix socket path (empty: none)")
	cert := flag.String("cert", "", "server certificate (PEM)")
	key := flag.String("key", "", "server key (PEM)")
	clientCA := flag.String("client-ca", "", "CA for client certificates (PEM)")
	flag.Parse()

	s, err := newServer(*protoDir)
	if err != nil {
		log.Fatalf("loading %s: %v", protoFile, err)
	}
	var listeners []*listener
	start := func(network, addr string, creds credentials.TransportCredentials) *listener {
		l, err := s.listen(network, addr, creds)
		if err != nil {
			log.Fatalf("listening on %s: %v", addr, err)
		}
		listeners = append(listeners, l)
		return l
	}
	start("tcp", *plain, nil)
	if *tlsAddr != "" {
		creds, err := tlsCreds(*cert, *key, *clientCA)
		if err != nil {
			log.Fatalf("TLS: %v", err)
		}
		start("tcp", *tlsAddr, creds)
	}
	if *unixPath != "" {
		_ = os.Remove(*unixPath)
		start("unix", *unixPath, nil)
		_ = os.Chmod(*unixPath, 0o777)
	}
	if *bounce != "" {
		s.bounce = start("tcp", *bounce, nil)
	}
	log.Printf("serving %s", serviceName)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, l := range listeners {
		l.srv.Stop()
	}
	s.bounceMu.Lock()
	if s.bounce != nil {
		s.bounce.srv.Stop()
	}
	s.bounceMu.Unlock()
}

func tlsCreds(certFile, keyFile, clientCA string) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificate", clientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return credentials.NewTLS(cfg), nil
}

func newServer(dir string) (*server, error) {
	if dir == "" {
		exe, _ := os.Executable()
		dir = filepath.Join(filepath.Dir(exe), "..", "proto")
	}
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{dir}}),
	}
	res, err := c.Compile(context.Background(), protoFile)
	if err != nil {
		return nil, err
	}
	files := new(protoregistry.Files)
	var register func(fd protoreflect.FileDescriptor) error
	register = func(fd protoreflect.FileDescriptor) error {
		if _, err := files.FindFileByPath(fd.Path()); err == nil {
			return nil
		}
		imps := fd.Imports()
		for i := 0; i < imps.Len(); i++ {
			if err := register(imps.Get(i).FileDescriptor); err != nil {
				return err
			}
		}
		return files.RegisterFile(fd)
	}
	for _, f := range res {
		if err := register(f); err != nil {
			return nil, err
		}
	}
	d, err := files.FindDescriptorByName(serviceName)
	if err != nil {
		return nil, err
	}
	return &server{files: files, svc: d.(protoreflect.ServiceDescriptor), sleeps: map[string]string{}}, nil
}

type listener struct {
	srv     *grpc.Server
	network string
	addr    string
}

func (s *server) listen(network, addr string, creds credentials.TransportCredentials) (*listener, error) {
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	opts = append(opts, grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	srv := grpc.NewServer(opts...)
	srv.RegisterService(s.serviceDesc(), s)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(serviceName, healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("rffitest.v1.Down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	// reflection answers from the compiled test files first, then from the
	// Go registry (health, reflection itself)
	ropts := reflection.ServerOptions{Services: srv, DescriptorResolver: resolvers{s.files, protoregistry.GlobalFiles}}
	reflectionv1.RegisterServerReflectionServer(srv, reflection.NewServerV1(ropts))
	reflectionv1alpha.RegisterServerReflectionServer(srv, reflection.NewServer(ropts))
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	go func() { _ = srv.Serve(ln) }()
	return &listener{srv: srv, network: network, addr: addr}, nil
}

// resolvers looks a descriptor up in each registry in turn.
type resolvers []*protoregistry.Files

func (r resolvers) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	for _, f := range r {
		if fd, err := f.FindFileByPath(path); err == nil {
			return fd, nil
		}
	}
	return nil, protoregistry.NotFound
}

func (r resolvers) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	for _, f := range r {
		if d, err := f.FindDescriptorByName(name); err == nil {
			return d, nil
		}
	}
	return nil, protoregistry.NotFound
}

// ---------------------------------------------------------------- service

type unaryFunc func(ctx context.Context, req *dynamicpb.Message) (proto.Message, error)
type streamFunc func(st grpc.ServerStream, m protoreflect.MethodDescriptor) error

func (s *server) serviceDesc() *grpc.ServiceDesc {
	unary := map[string]unaryFunc{
		"Echo":         func(_ context.Context, req *dynamicpb.Message) (proto.Message, error) { return req, nil },
		"SayHello":     s.sayHello,
		"EchoMetadata": s.echoMetadata,
		"Sleep":        s.sleep,
		"Canceled":     s.canceled,
		"Fail":         s.fail,
		"Bounce":       s.bounceCall,
	}
	streams := map[string]streamFunc{
		"ServerStream": s.serverStream,
		"ClientStream": s.clientStream,
		"Bidi":         s.bidi,
	}
	sd := &grpc.ServiceDesc{ServiceName: serviceName, HandlerType: (*any)(nil), Metadata: protoFile}
	methods := s.svc.Methods()
	for i := 0; i < methods.Len(); i++ {
		m := methods.Get(i)
		name := string(m.Name())
		if m.IsStreamingClient() || m.IsStreamingServer() {
			f := streams[name]
			if f == nil {
				log.Fatalf("no implementation for stream %s", name)
			}
			sd.Streams = append(sd.Streams, grpc.StreamDesc{
				StreamName:    name,
				ServerStreams: m.IsStreamingServer(),
				ClientStreams: m.IsStreamingClient(),
				Handler:       func(_ any, st grpc.ServerStream) error { return f(st, m) },
			})
			continue
		}
		f := unary[name]
		if f == nil {
			log.Fatalf("no implementation for method %s", name)
		}
		in := m.Input()
		sd.Methods = append(sd.Methods, grpc.MethodDesc{
			MethodName: name,
			Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				req := dynamicpb.NewMessage(in)
				if err := dec(req); err != nil {
					return nil, err
				}
				return f(ctx, req)
			},
		})
	}
	return sd
}

func (s *server) message(name string) *dynamicpb.Message {
	d, err := s.files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		panic(err)
	}
	return dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))
}

func field(m protoreflect.Message, name string) protoreflect.FieldDescriptor {
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		panic("no field " + name + " in " + string(m.Descriptor().FullName()))
	}
	return fd
}

func get(m protoreflect.Message, name string) protoreflect.Value { return m.Get(field(m, name)) }

func set(m protoreflect.Message, name string, v any) {
	m.Set(field(m, name), protoreflect.ValueOf(v))
}

func (s *server) empty() proto.Message { return s.message("google.protobuf.Empty") }

func (s *server) sayHello(_ context.Context, req *dynamicpb.Message) (proto.Message, error) {
	out := s.message("rffitest.v1.HelloReply")
	set(out, "message", "Hello "+get(req, "name").String())
	return out, nil
}

func (s *server) echoMetadata(ctx context.Context, req *dynamicpb.Message) (proto.Message, error) {
	out := s.message("rffitest.v1.MetadataReply")
	md, _ := metadata.FromIncomingContext(ctx)
	received := out.Mutable(field(out, "received")).Map()
	for k, vs := range md {
		received.Set(protoreflect.ValueOfString(k).MapKey(), protoreflect.ValueOfString(strings.Join(vs, ",")))
	}
	if a := md.Get(":authority"); len(a) > 0 {
		set(out, "authority", a[0])
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			set(out, "peer_cert_cn", ti.State.PeerCertificates[0].Subject.CommonName)
		}
	}
	toMD := func(name string) metadata.MD {
		md := metadata.MD{}
		get(req, name).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			md.Append(k.String(), v.String())
			return true
		})
		return md
	}
	if err := grpc.SetHeader(ctx, toMD("headers")); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, toMD("trailers")); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *server) sleep(ctx context.Context, req *dynamicpb.Message) (proto.Message, error) {
	id := get(req, "id").String()
	ms := get(req, "ms").Int()
	s.mu.Lock()
	s.sleeps[id] = "running"
	s.mu.Unlock()
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	out := s.message("rffitest.v1.SleepReply")
	select {
	case <-t.C:
		s.mu.Lock()
		s.sleeps[id] = "finished"
		s.mu.Unlock()
		return out, nil
	case <-ctx.Done():
		s.mu.Lock()
		s.sleeps[id] = "canceled"
		s.mu.Unlock()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// record notes the state of the call with this id (no id: nothing);
// "canceled" is final.
func (s *server) record(id, state string) {
	if id == "" {
		return
	}
	s.mu.Lock()
	if s.sleeps[id] != "canceled" {
		s.sleeps[id] = state
	}
	s.mu.Unlock()
}

func (s *server) canceled(_ context.Context, req *dynamicpb.Message) (proto.Message, error) {
	s.mu.Lock()
	state := s.sleeps[get(req, "id").String()]
	s.mu.Unlock()
	out := s.message("rffitest.v1.CanceledReply")
	set(out, "seen", state == "canceled")
	set(out, "finished", state == "finished")
	return out, nil
}

func (s *server) fail(_ context.Context, req *dynamicpb.Message) (proto.Message, error) {
	st := &spb.Status{Code: int32(get(req, "code").Int()), Message: get(req, "message").String()}
	if req.Has(field(req, "detail")) {
		a, err := anypb.New(get(req, "detail").Message().Interface())
		if err != nil {
			return nil, err
		}
		st.Details = append(st.Details, a)
	}
	return nil, status.FromProto(st).Err()
}

func (s *server) bounceCall(_ context.Context, req *dynamicpb.Message) (proto.Message, error) {
	down := time.Duration(get(req, "down_ms").Int()) * time.Millisecond
	s.bounceMu.Lock()
	l := s.bounce
	s.bounce = nil
	s.bounceMu.Unlock()
	if l == nil {
		return nil, status.Error(codes.FailedPrecondition, "bounce listener already down")
	}
	l.srv.Stop()
	go func() {
		time.Sleep(down)
		for i := 0; i < 50; i++ {
			nl, err := s.listen(l.network, l.addr, nil)
			if err == nil {
				s.bounceMu.Lock()
				s.bounce = nl
				s.bounceMu.Unlock()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		log.Printf("bounce: could not listen on %s again", l.addr)
	}()
	return s.empty(), nil
}

func (s *server) serverStream(st grpc.ServerStream, m protoreflect.MethodDescriptor) error {
	req := dynamicpb.NewMessage(m.Input())
	if err := st.RecvMsg(req); err != nil {
		return err
	}
	count := get(req, "count").Int()
	payload := get(req, "payload").String()
	interval := time.Duration(get(req, "interval_ms").Int()) * time.Millisecond
	id := get(req, "id").String()
	s.record(id, "running")
	defer s.record(id, "finished")
	for i := int64(1); i <= count; i++ {
		if interval > 0 {
			select {
			case <-time.After(interval):
			case <-st.Context().Done():
				s.record(id, "canceled")
				return status.FromContextError(st.Context().Err()).Err()
			}
		}
		item := dynamicpb.NewMessage(m.Output())
		set(item, "seq", i)
		set(item, "payload", payload)
		if err := st.SendMsg(item); err != nil {
			return err
		}
	}
	if code := get(req, "fail_code").Int(); code != 0 {
		return status.Errorf(codes.Code(code), "failed after %d messages", count)
	}
	return nil
}

func (s *server) clientStream(st grpc.ServerStream, m protoreflect.MethodDescriptor) error {
	var count, sum int64
	var last string
	for {
		item := dynamicpb.NewMessage(m.Input())
		if err := st.RecvMsg(item); err != nil {
			if isEOF(err) {
				break
			}
			return err
		}
		count++
		sum += get(item, "seq").Int()
		last = get(item, "payload").String()
	}
	out := dynamicpb.NewMessage(m.Output())
	set(out, "count", count)
	set(out, "seq_sum", sum)
	set(out, "last_payload", last)
	return st.SendMsg(out)
}

func (s *server) bidi(st grpc.ServerStream, m protoreflect.MethodDescriptor) error {
	for {
		item := dynamicpb.NewMessage(m.Input())
		if err := st.RecvMsg(item); err != nil {
			if isEOF(err) {
				return nil
			}
			return err
		}
		if err := st.SendMsg(item); err != nil {
			return err
		}
	}
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
