package grpc

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// codeNames are the canonical gRPC status code names.
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("CODE_%d", c)
}

// statusError is a failed RPC: Lua gets nil, "NAME: message", status.
type statusError struct {
	msg    string
	detail map[string]any
}

func (e *statusError) Error() string { return e.msg }
func (e *statusError) Detail() any   { return e.detail }

// statusError turns a grpc-go error into a statusError whose detail is
// {code = n, name = "NAME", message = "...", details = {...}} (+ headers
// and trailers when asked for).
func (c *conn) statusError(err error, header, trailer metadata.MD, withMD bool) error {
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	name := codeName(st.Code())
	d := map[string]any{"code": int64(st.Code()), "name": name, "message": st.Message()}
	if pd := st.Proto().GetDetails(); len(pd) > 0 {
		details := make([]any, 0, len(pd))
		for _, a := range pd {
			raw, err := encodeMessage(a.ProtoReflect(), c.out, c.types)
			if err != nil {
				continue
			}
			details = append(details, raw)
		}
		d["details"] = details
	}
	if withMD {
		d["headers"] = mdToLua(header)
		d["trailers"] = mdToLua(trailer)
	}
	return &statusError{msg: name + ": " + st.Message(), detail: d}
}

// The reflection service, v1 and its older v1alpha twin (same messages).
const (
	reflectionV1      = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	reflectionV1Alpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

var reflectionDesc = grpc.StreamDesc{StreamName: "ServerReflectionInfo", ServerStreams: true, ClientStreams: true}

// reflect asks the server for the file defining symbol (and the files it
// imports) and adds them to the connection's registry.
func (c *conn) reflect(ctx context.Context, symbol string) error {
	c.reflectMu.Lock()
	defer c.reflectMu.Unlock()
	if _, err := c.local.FindDescriptorByName(protoreflect.FullName(symbol)); err == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stream grpc.ClientStream
	open := func(path string) error {
		var err error
		stream, err = c.cc.NewStream(ctx, &reflectionDesc, path)
		if err != nil {
			return c.statusError(err, nil, nil, false)
		}
		return nil
	}
	ask := func(req *reflectionpb.ServerReflectionRequest) ([][]byte, error) {
		if err := stream.SendMsg(req); err != nil {
			if errors.Is(err, io.EOF) {
				err = stream.RecvMsg(new(reflectionpb.ServerReflectionResponse))
			}
			return nil, c.statusError(err, nil, nil, false)
		}
		resp := new(reflectionpb.ServerReflectionResponse)
		if err := stream.RecvMsg(resp); err != nil {
			return nil, c.statusError(err, nil, nil, false)
		}
		if e := resp.GetErrorResponse(); e != nil {
			code := codes.Code(e.GetErrorCode())
			if code == codes.NotFound {
				// (the server's own text may be protobuf's unstable one)
				return nil, errors.New("NOT_FOUND: the server does not know it")
			}
			return nil, fmt.Errorf("%s: %s", codeName(code), e.GetErrorMessage())
		}
		return resp.GetFileDescriptorResponse().GetFileDescriptorProto(), nil
	}
	first := &reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol},
	}
	if err := open(reflectionV1); err != nil {
		return fmt.Errorf("grpc reflection: %w", err)
	}
	blobs, err := ask(first)
	if se, ok := err.(*statusError); ok && se.detail["name"] == "UNIMPLEMENTED" {
		// an older server: v1alpha has the same messages under another name
		if err = open(reflectionV1Alpha); err == nil {
			blobs, err = ask(first)
		}
	}
	if err != nil {
		return fmt.Errorf("grpc reflection: looking up %s: %w", symbol, err)
	}
	protos := map[string]*descriptorpb.FileDescriptorProto{}
	take := func(blobs [][]byte) error {
		for _, b := range blobs {
			fdp := new(descriptorpb.FileDescriptorProto)
			if err := proto.Unmarshal(b, fdp); err != nil {
				return fmt.Errorf("a file descriptor: %w", err)
			}
			protos[fdp.GetName()] = fdp
		}
		return nil
	}
	if err := take(blobs); err != nil {
		return fmt.Errorf("grpc reflection: %w", err)
	}
	known := chain{c.local, loaded, protoregistry.GlobalFiles}
	// fetch imports the server did not send and nobody here knows
	for pending := true; pending; {
		pending = false
		for _, fdp := range protos {
			for _, dep := range fdp.GetDependency() {
				if _, have := protos[dep]; have {
					continue
				}
				if _, err := known.FindFileByPath(dep); err == nil {
					continue
				}
				blobs, err := ask(&reflectionpb.ServerReflectionRequest{
					MessageRequest: &reflectionpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep},
				})
				if err != nil {
					return fmt.Errorf("grpc reflection: fetching %s: %w", dep, err)
				}
				if err := take(blobs); err != nil {
					return fmt.Errorf("grpc reflection: %w", err)
				}
				pending = true
			}
		}
	}
	_ = stream.CloseSend()
	for path := range protos {
		// well-known files the process already has are reused, not rebuilt
		if _, err := (chain{loaded, protoregistry.GlobalFiles}).FindFileByPath(path); err == nil {
			delete(protos, path)
		}
	}
	for path := range protos {
		if _, err := buildFile(c.local, protos, path, chain{loaded, protoregistry.GlobalFiles}, 0); err != nil {
			return fmt.Errorf("grpc reflection: %w", err)
		}
	}
	return nil
}

var _ core.DetailedError = (*statusError)(nil)
