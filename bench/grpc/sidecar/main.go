// Command sidecar is the comparison service of bench/grpc: a small Go HTTP
// server that answers GET /hello?name=x by making the SayHello gRPC call
// with grpc-go and writing the reply's message, the same bytes the
// resty.ffi.grpc location returns. nginx reaches it with proxy_pass.
//
//	sidecar -listen 127.0.0.1:18288 -target 127.0.0.1:15051 -proto t/servers/grpc/proto
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/bufbuild/protocompile"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18288", "address, or unix:/path")
	target := flag.String("target", "127.0.0.1:15051", "gRPC server")
	protoDir := flag.String("proto", "t/servers/grpc/proto", "import path of rffitest/v1/test.proto")
	flag.Parse()

	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{*protoDir}})}
	files, err := c.Compile(context.Background(), "rffitest/v1/test.proto")
	if err != nil {
		log.Fatal(err)
	}
	fd := files[0]
	in := fd.Messages().ByName("HelloRequest")
	out := fd.Messages().ByName("HelloReply")
	name := in.Fields().ByName("name")
	msgField := out.Fields().ByName("message")
	cc, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		req := dynamicpb.NewMessage(in)
		req.Set(name, protoreflect.ValueOfString(r.URL.Query().Get("name")))
		resp := dynamicpb.NewMessage(out)
		ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
		defer cancel()
		if err := cc.Invoke(ctx, "/rffitest.v1.TestService/SayHello", req, resp); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(resp.Get(msgField).String()))
	})
	var ln net.Listener
	if path, ok := strings.CutPrefix(*listen, "unix:"); ok {
		os.Remove(path)
		ln, err = net.Listen("unix", path)
		if err == nil {
			os.Chmod(path, 0o777)
		}
	} else {
		ln, err = net.Listen("tcp", *listen)
	}
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, nil))
}
