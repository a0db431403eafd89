package grpc

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// outOpts shapes the tables Lua receives.
type outOpts struct {
	emitDefaults bool // unset proto3 scalars, lists and maps appear with their zero value
	int64String  bool // 64-bit integers as decimal strings instead of numbers / int64 cdata
	jsonNames    bool // lowerCamelCase JSON names instead of the .proto names
	enumNumber   bool // enums as numbers instead of value names
}

// writer encodes a protobuf message straight into the core's MessagePack,
// so a reply never goes through an intermediate Go map.
type writer struct {
	enc   *core.Encoder
	o     outOpts
	types *typeResolver
}

// encodeMessage returns m as a pre-encoded Lua value.
func encodeMessage(m protoreflect.Message, o outOpts, types *typeResolver) (core.Raw, error) {
	w := writer{enc: &core.Encoder{Buf: make([]byte, 0, 128)}, o: o, types: types}
	if err := w.message(m, 0); err != nil {
		return nil, err
	}
	return core.Raw(w.enc.Buf), nil
}

// encodeReply is encodeMessage into a core.Reply, for a message that is
// most often a call's whole result: the core sends its bytes as they are.
func encodeReply(m protoreflect.Message, o outOpts, types *typeResolver) (*core.Reply, error) {
	r := core.NewReply()
	w := writer{enc: &r.Encoder, o: o, types: types}
	if err := w.message(m, 0); err != nil {
		r.Release()
		return nil, err
	}
	return r, nil
}

const maxNesting = 100

// maxExactInt is 2^53: integers up to it are exact Lua numbers.
const maxExactInt = 1 << 53

func (w *writer) name(fd protoreflect.FieldDescriptor) string {
	if w.o.jsonNames {
		return fd.JSONName()
	}
	return string(fd.Name())
}

// emitted says whether fd appears in the output of m.
func (w *writer) emitted(m protoreflect.Message, fd protoreflect.FieldDescriptor) bool {
	if m.Has(fd) {
		return true
	}
	if !w.o.emitDefaults {
		return false
	}
	// members of a oneof, optional fields and messages have presence: an
	// unset one has no value to emit
	return !fd.HasPresence()
}

func (w *writer) message(m protoreflect.Message, depth int) error {
	if depth > maxNesting {
		return fmt.Errorf("message nesting deeper than %d", maxNesting)
	}
	md := m.Descriptor()
	if wkt := wellKnown(md.FullName()); wkt != wktNone {
		return w.wellKnown(wkt, m, depth)
	}
	fields := md.Fields()
	n := 0
	for i := 0; i < fields.Len(); i++ {
		if w.emitted(m, fields.Get(i)) {
			n++
		}
	}
	w.enc.MapHeader(n)
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !w.emitted(m, fd) {
			continue
		}
		w.enc.String(w.name(fd))
		if err := w.field(fd, m.Get(fd), depth); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) field(fd protoreflect.FieldDescriptor, v protoreflect.Value, depth int) error {
	switch {
	case fd.IsList():
		l := v.List()
		w.enc.ArrayHeader(l.Len())
		for i := 0; i < l.Len(); i++ {
			if err := w.singular(fd, l.Get(i), depth); err != nil {
				return err
			}
		}
	case fd.IsMap():
		mp := v.Map()
		w.enc.MapHeader(mp.Len())
		kfd, vfd := fd.MapKey(), fd.MapValue()
		var err error
		mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			w.mapKey(kfd, k)
			err = w.singular(vfd, v, depth)
			return err == nil
		})
		return err
	default:
		return w.singular(fd, v, depth)
	}
	return nil
}

// mapKey writes a map key. 64-bit keys beyond 2^53 become decimal strings:
// a cdata key could never be looked up in a Lua table.
func (w *writer) mapKey(fd protoreflect.FieldDescriptor, k protoreflect.MapKey) {
	switch fd.Kind() {
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if i := k.Int(); w.o.int64String || i > maxExactInt || i < -maxExactInt {
			w.enc.String(strconv.FormatInt(i, 10))
			return
		}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if u := k.Uint(); w.o.int64String || u > maxExactInt {
			w.enc.String(strconv.FormatUint(u, 10))
			return
		}
	}
	_ = w.singular(fd, k.Value(), 0)
}

func (w *writer) int64(i int64) {
	if w.o.int64String {
		w.enc.String(strconv.FormatInt(i, 10))
		return
	}
	w.enc.Int(i)
}

func (w *writer) uint64(u uint64) {
	if w.o.int64String {
		w.enc.String(strconv.FormatUint(u, 10))
		return
	}
	w.enc.Uint(u)
}

func (w *writer) singular(fd protoreflect.FieldDescriptor, v protoreflect.Value, depth int) error {
	e := w.enc
	switch fd.Kind() {
	case protoreflect.BoolKind:
		e.Encode(v.Bool())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		e.Int(v.Int())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		e.Uint(v.Uint())
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		w.int64(v.Int())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		w.uint64(v.Uint())
	case protoreflect.FloatKind:
		e.Float(float32To64(v.Float()))
	case protoreflect.DoubleKind:
		e.Float(v.Float())
	case protoreflect.StringKind:
		e.String(v.String())
	case protoreflect.BytesKind:
		e.Bytes(v.Bytes())
	case protoreflect.EnumKind:
		n := v.Enum()
		if !w.o.enumNumber {
			if ev := fd.Enum().Values().ByNumber(n); ev != nil {
				e.String(string(ev.Name()))
				break
			}
		}
		e.Int(int64(n))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return w.message(v.Message(), depth+1)
	default:
		return fmt.Errorf("field %s: unsupported kind %s", fd.FullName(), fd.Kind())
	}
	return nil
}

// float32To64 widens a float field's value to the double with the same
// shortest decimal form, so 0.1 sent comes back as 0.1.
func float32To64(f float64) float64 {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return f
	}
	s := strconv.FormatFloat(f, 'g', -1, 32)
	d, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return f
	}
	return d
}

// ---------------------------------------------------------------- well-known types

type wkt int

const (
	wktNone wkt = iota
	wktTimestamp
	wktDuration
	wktStruct
	wktValue
	wktList
	wktWrapper
	wktAny
	wktEmpty
)

func wellKnown(name protoreflect.FullName) wkt {
	if !strings.HasPrefix(string(name), "google.protobuf.") {
		return wktNone
	}
	switch name[len("google.protobuf."):] {
	case "Timestamp":
		return wktTimestamp
	case "Duration":
		return wktDuration
	case "Struct":
		return wktStruct
	case "Value":
		return wktValue
	case "ListValue":
		return wktList
	case "DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value",
		"UInt32Value", "BoolValue", "StringValue", "BytesValue":
		return wktWrapper
	case "Any":
		return wktAny
	case "Empty":
		return wktEmpty
	}
	return wktNone
}

func byName(m protoreflect.Message, name string) protoreflect.FieldDescriptor {
	return m.Descriptor().Fields().ByName(protoreflect.Name(name))
}

func (w *writer) wellKnown(kind wkt, m protoreflect.Message, depth int) error {
	e := w.enc
	switch kind {
	case wktTimestamp:
		e.String(formatTimestamp(m.Get(byName(m, "seconds")).Int(), m.Get(byName(m, "nanos")).Int()))
	case wktDuration:
		e.String(formatDuration(m.Get(byName(m, "seconds")).Int(), m.Get(byName(m, "nanos")).Int()))
	case wktStruct:
		return w.field(byName(m, "fields"), m.Get(byName(m, "fields")), depth)
	case wktList:
		return w.field(byName(m, "values"), m.Get(byName(m, "values")), depth)
	case wktValue:
		od := m.Descriptor().Oneofs().ByName("kind")
		fd := m.WhichOneof(od)
		if fd == nil || fd.Name() == "null_value" {
			e.Encode(core.Null{})
			return nil
		}
		return w.singular(fd, m.Get(fd), depth)
	case wktWrapper:
		fd := byName(m, "value")
		return w.singular(fd, m.Get(fd), depth)
	case wktEmpty:
		e.MapHeader(0)
	case wktAny:
		return w.any(m, depth)
	}
	return nil
}

func (w *writer) any(m protoreflect.Message, depth int) error {
	url := m.Get(byName(m, "type_url")).String()
	raw := m.Get(byName(m, "value")).Bytes()
	md, err := w.types.messageByURL(url)
	if err != nil {
		// unknown type: hand the packed bytes over as they are
		w.enc.MapHeader(2)
		w.enc.String("@type")
		w.enc.String(url)
		w.enc.String("value")
		w.enc.Bytes(raw)
		return nil
	}
	inner := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(raw, inner); err != nil {
		return fmt.Errorf("google.protobuf.Any %s: %w", url, err)
	}
	if wellKnown(md.FullName()) != wktNone {
		w.enc.MapHeader(2)
		w.enc.String("@type")
		w.enc.String(url)
		w.enc.String("value")
		return w.message(inner, depth+1)
	}
	// {"@type": url, fields...}: encode the fields, then patch the header
	sub := writer{enc: &core.Encoder{}, o: w.o, types: w.types}
	if err := sub.message(inner, depth+1); err != nil {
		return err
	}
	n, body := splitMapHeader(sub.enc.Buf)
	w.enc.MapHeader(n + 1)
	w.enc.String("@type")
	w.enc.String(url)
	w.enc.Buf = append(w.enc.Buf, body...)
	return nil
}

// splitMapHeader reads a MessagePack map header.
func splitMapHeader(b []byte) (int, []byte) {
	switch {
	case b[0]&0xf0 == 0x80:
		return int(b[0] & 0x0f), b[1:]
	case b[0] == 0xde:
		return int(b[1])<<8 | int(b[2]), b[3:]
	default: // 0xdf
		return int(b[1])<<24 | int(b[2])<<16 | int(b[3])<<8 | int(b[4]), b[5:]
	}
}

// fraction renders nanoseconds with 0, 3, 6 or 9 digits, as the protobuf
// JSON mapping does.
func fraction(nanos int64) string {
	switch {
	case nanos == 0:
		return ""
	case nanos%1e6 == 0:
		return fmt.Sprintf(".%03d", nanos/1e6)
	case nanos%1e3 == 0:
		return fmt.Sprintf(".%06d", nanos/1e3)
	default:
		return fmt.Sprintf(".%09d", nanos)
	}
}

func formatTimestamp(secs, nanos int64) string {
	return time.Unix(secs, 0).UTC().Format("2006-01-02T15:04:05") + fraction(nanos) + "Z"
}

func formatDuration(secs, nanos int64) string {
	sign := ""
	if secs < 0 || nanos < 0 {
		sign = "-"
		secs, nanos = -secs, -nanos
	}
	return sign + strconv.FormatInt(secs, 10) + fraction(nanos) + "s"
}
