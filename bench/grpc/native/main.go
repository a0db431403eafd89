// Command native is the baseline of bench/grpc: the same sequential unary
// SayHello calls that bench/grpc/run.sh makes through resty.ffi.grpc, made
// by a plain Go program with grpc-go against the same server. Messages are
// dynamicpb messages from the same test .proto compiled at run time (no
// generated code exists in this project), as modules/grpc builds them.
//
//	native -n 100000 -target 127.0.0.1:15051 -proto t/servers/grpc/proto
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/bufbuild/protocompile"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

func main() {
	n := flag.Int("n", 100000, "calls")
	target := flag.String("target", "127.0.0.1:15051", "server")
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
	defer cc.Close()
	call := func(i int) string {
		req := dynamicpb.NewMessage(in)
		req.Set(name, protoreflect.ValueOfString("bench"))
		resp := dynamicpb.NewMessage(out)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := cc.Invoke(ctx, "/rffitest.v1.TestService/SayHello", req, resp); err != nil {
			log.Fatalf("call %d: %v", i, err)
		}
		return resp.Get(msgField).String()
	}
	for i := 0; i < 1000; i++ { // warm up
		call(i)
	}
	start := time.Now()
	for i := 0; i < *n; i++ {
		if got := call(i); got != "Hello bench" {
			log.Fatalf("reply %q", got)
		}
	}
	el := time.Since(start)
	fmt.Printf("%d %.3f %.0f\n", *n, el.Seconds(), float64(*n)/el.Seconds())
}
