package grpc

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/bufbuild/protocompile"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// registry is a set of file descriptors safe for concurrent use.
type registry struct {
	mu    sync.RWMutex
	files *protoregistry.Files
}

func newRegistry() *registry { return &registry{files: new(protoregistry.Files)} }

// loaded holds every file loaded with grpc.load / load_string /
// load_descriptor_set in this worker; connections resolve methods in it.
var loaded = newRegistry()

func (r *registry) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.files.FindFileByPath(path)
}

func (r *registry) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.files.FindDescriptorByName(name)
}

// add registers fd and its imports; files already known by path are kept.
func (r *registry) add(fd protoreflect.FileDescriptor) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addLocked(fd)
}

func (r *registry) addLocked(fd protoreflect.FileDescriptor) error {
	if _, err := r.files.FindFileByPath(fd.Path()); err == nil {
		return nil
	}
	imps := fd.Imports()
	for i := 0; i < imps.Len(); i++ {
		if err := r.addLocked(imps.Get(i).FileDescriptor); err != nil {
			return err
		}
	}
	if err := r.files.RegisterFile(fd); err != nil {
		return fmt.Errorf("registering %s: %w", fd.Path(), err)
	}
	return nil
}

// chain looks descriptors up in each resolver in turn.
type chain []protodesc.Resolver

func (c chain) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	for _, r := range c {
		if r == nil {
			continue
		}
		if fd, err := r.FindFileByPath(path); err == nil {
			return fd, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", path, protoregistry.NotFound)
}

func (c chain) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	for _, r := range c {
		if r == nil {
			continue
		}
		if d, err := r.FindDescriptorByName(name); err == nil {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", name, protoregistry.NotFound)
}

// typeResolver finds message types for Any and status details: in the
// connection's reflected files, the loaded files, then Go's registry
// (well-known types, google.rpc error details).
type typeResolver struct {
	chain chain
}

func newTypeResolver(local *registry) *typeResolver {
	c := chain{}
	if local != nil {
		c = append(c, local)
	}
	return &typeResolver{chain: append(c, loaded, protoregistry.GlobalFiles)}
}

func (t *typeResolver) messageByURL(url string) (protoreflect.MessageDescriptor, error) {
	name := url
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		name = url[i+1:]
	}
	d, err := t.chain.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("type %q is not loaded", url)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("%q is not a message type", url)
	}
	return md, nil
}

// ---------------------------------------------------------------- loading

// protos is the "grpc.protos" runtime: loading .proto files for every
// connection of the worker.
type protos struct{}

func newProtos(opts core.Options) (core.Object, error) {
	if len(opts) > 0 {
		return nil, errors.New("grpc.protos: takes no options")
	}
	return protos{}, nil
}

func (protos) Close(context.Context) error { return nil }

func (protos) Call(ctx context.Context, op string, args []any) (any, error) {
	switch op {
	case "load":
		paths, err := stringList(arg(args, 0), "paths")
		if err != nil {
			return nil, err
		}
		imports, err := stringList(arg(args, 1), "import_paths")
		if err != nil {
			return nil, err
		}
		return compileFiles(ctx, paths, imports, nil)
	case "load_string":
		name, _ := arg(args, 0).(string)
		src, ok := arg(args, 1).(string)
		if name == "" || !ok {
			return nil, errors.New("grpc.load_string: a file name and its source expected")
		}
		imports, err := stringList(arg(args, 2), "import_paths")
		if err != nil {
			return nil, err
		}
		return compileFiles(ctx, []string{name}, imports, map[string]string{name: src})
	case "load_descriptor_set":
		b, ok := arg(args, 0).(string)
		if !ok {
			return nil, errors.New("grpc.load_descriptor_set: the serialized FileDescriptorSet (a string) expected")
		}
		return loadDescriptorSet([]byte(b))
	case "services":
		return listServices(), nil
	}
	return nil, core.UnknownOp("grpc.protos", op)
}

func arg(args []any, i int) any {
	if i < len(args) {
		return args[i]
	}
	return nil
}

// stringList accepts a string or an array of strings.
func stringList(v any, what string) ([]string, error) {
	switch x := v.(type) {
	case nil, core.Null:
		return nil, nil
	case string:
		return []string{x}, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, it := range x {
			s, ok := it.(string)
			if !ok {
				return nil, fmt.Errorf("%s: strings expected, got %s", what, describe(it))
			}
			out = append(out, s)
		}
		return out, nil
	case map[string]any:
		if len(x) == 0 {
			return nil, nil
		}
	}
	return nil, fmt.Errorf("%s: a string or an array of strings expected, got %s", what, describe(v))
}

// compileFiles compiles .proto files (from disk, or from sources) and
// registers them; it returns the services they define.
func compileFiles(ctx context.Context, paths, imports []string, sources map[string]string) (any, error) {
	if len(paths) == 0 {
		return nil, errors.New("grpc.load: no .proto file given")
	}
	names := make([]string, len(paths))
	noImports := len(imports) == 0
	for i, p := range paths {
		names[i] = p
		// an absolute path and no import path: the file's directory is one
		if noImports && filepath.IsAbs(p) && sources == nil {
			imports = append(imports, filepath.Dir(p))
			names[i] = filepath.Base(p)
		}
	}
	var srcs protocompile.CompositeResolver
	if sources != nil {
		srcs = append(srcs, &protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(sources)})
	}
	srcs = append(srcs, &protocompile.SourceResolver{ImportPaths: imports})
	known := protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
		fd, err := loaded.FindFileByPath(path)
		if err != nil {
			return protocompile.SearchResult{}, err
		}
		return protocompile.SearchResult{Desc: fd}, nil
	})
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(append(protocompile.CompositeResolver{known}, srcs...)),
	}
	res, err := c.Compile(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("grpc.load: %w", err)
	}
	var services []string
	for _, f := range res {
		if err := loaded.add(f); err != nil {
			return nil, fmt.Errorf("grpc.load: %w", err)
		}
		services = appendServices(services, f)
	}
	return services, nil
}

func appendServices(out []string, fd protoreflect.FileDescriptor) []string {
	svcs := fd.Services()
	for i := 0; i < svcs.Len(); i++ {
		out = append(out, string(svcs.Get(i).FullName()))
	}
	return out
}

func listServices() []string {
	var out []string
	loaded.mu.RLock()
	loaded.files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		out = appendServices(out, fd)
		return true
	})
	loaded.mu.RUnlock()
	sort.Strings(out)
	return out
}

func loadDescriptorSet(b []byte) (any, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		// (protobuf's own message is deliberately unstable: not quoted)
		return nil, errors.New("grpc.load_descriptor_set: not a serialized FileDescriptorSet (invalid wire format)")
	}
	byPath := map[string]*descriptorpb.FileDescriptorProto{}
	for _, f := range set.File {
		byPath[f.GetName()] = f
	}
	var services []string
	for _, f := range set.File {
		fd, err := buildFile(loaded, byPath, f.GetName(), chain{loaded, protoregistry.GlobalFiles}, 0)
		if err != nil {
			return nil, fmt.Errorf("grpc.load_descriptor_set: %w", err)
		}
		services = appendServices(services, fd)
	}
	return services, nil
}

// buildFile makes path (from protos) and its dependencies into descriptors
// registered in dst; files dst or the resolver already know are reused.
func buildFile(dst *registry, protos map[string]*descriptorpb.FileDescriptorProto, path string, res chain, depth int) (protoreflect.FileDescriptor, error) {
	if fd, err := dst.FindFileByPath(path); err == nil {
		return fd, nil
	}
	fdp, ok := protos[path]
	if !ok {
		if fd, err := res.FindFileByPath(path); err == nil {
			return fd, nil
		}
		return nil, fmt.Errorf("%s: not found", path)
	}
	if depth > 100 {
		return nil, fmt.Errorf("%s: import cycle", path)
	}
	for _, dep := range fdp.GetDependency() {
		if _, err := buildFile(dst, protos, dep, res, depth+1); err != nil {
			return nil, err
		}
	}
	fd, err := protodesc.NewFile(fdp, chain{dst, res})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := dst.add(fd); err != nil {
		return nil, err
	}
	return fd, nil
}
