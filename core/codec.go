package core

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"time"
)

// The codec is MessagePack with three extension types of our own:
//
//	ext 0, length 0: Null    (Lua ngx.null; a plain msgpack nil is Lua nil)
//	ext 1, length 8: Handle  (a big-endian uint64 naming a Go object)
//	ext 2:           Records (an array of maps that share their keys)
//
// A Records payload is two MessagePack arrays: the n keys (strings), then
// the cells of every record, n per record, one record after another. It is
// how tabular results (SQL rows) travel: each key is decoded once per
// result instead of once per row, which is most of what decoding a map of
// short values costs in Lua. Lua and Go both decode it as an array of maps;
// only Go writes it (Encoder.BeginRecords).
//
// Decoding produces: nil, Null, bool, int64, uint64 (only above MaxInt64),
// float64, string (msgpack str), []byte (msgpack bin), []any,
// map[string]any (all keys strings) or map[any]any, Handle.

// Null is the Go value of Lua's ngx.null (SQL NULL, Redis nil bulk).
type Null struct{}

// Handle names a Go object registered in the handle table.
type Handle uint64

// Raw is an already encoded MessagePack value; the encoder copies it as is.
type Raw []byte

const (
	extNull    = 0
	extHandle  = 1
	extRecords = 2
	// maxDepth bounds nesting so a hostile frame cannot exhaust the stack.
	maxDepth = 200
)

// ErrCodec is wrapped by every decoding error.
var ErrCodec = errors.New("codec")

// Decode decodes exactly one value that must span all of b.
func Decode(b []byte) (any, error) {
	d := decoder{buf: b}
	v, err := d.value(0)
	if err == nil {
		err = d.end()
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// DecodeArgs decodes an argument frame: an array of values.
func DecodeArgs(b []byte) ([]any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	// The array is decoded here rather than by Decode, which would box
	// the slice into an interface: one allocation less on every call.
	d := decoder{buf: b, pos: 1}
	n, isArray, err := d.arrayLen(b[0])
	if !isArray {
		v, err := Decode(b)
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: argument frame is %T, not an array", ErrCodec, v)
	}
	var args []any
	if err == nil {
		args, err = d.arrayOf(n, 0)
	}
	if err == nil {
		err = d.end()
	}
	if err != nil {
		return nil, err
	}
	return args, nil
}

type decoder struct {
	buf []byte
	pos int
}

// end reports bytes left after the value that should span the frame.
func (d *decoder) end() error {
	if d.pos != len(d.buf) {
		return fmt.Errorf("%w: %d trailing bytes", ErrCodec, len(d.buf)-d.pos)
	}
	return nil
}

// arrayLen reads the element count of an array whose type byte t was just
// taken; isArray is false when t is not an array's.
func (d *decoder) arrayLen(t byte) (n int, isArray bool, err error) {
	switch {
	case t >= 0x90 && t <= 0x9f:
		return int(t & 0x0f), true, nil
	case t == 0xdc || t == 0xdd:
		u, err := d.uint(2 << (t - 0xdc))
		return int(min(u, math.MaxInt32+1)), true, err
	}
	return 0, false, nil
}

func (d *decoder) take(n int) ([]byte, error) {
	if n < 0 || len(d.buf)-d.pos < n {
		return nil, fmt.Errorf("%w: truncated frame (need %d bytes at offset %d of %d)", ErrCodec, n, d.pos, len(d.buf))
	}
	b := d.buf[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

func (d *decoder) uint(n int) (uint64, error) {
	b, err := d.take(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	default:
		return binary.BigEndian.Uint64(b), nil
	}
}

func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nesting deeper than %d", ErrCodec, maxDepth)
	}
	tb, err := d.take(1)
	if err != nil {
		return nil, err
	}
	t := tb[0]
	if n, isArray, err := d.arrayLen(t); isArray {
		if err != nil {
			return nil, err
		}
		return d.array(n, depth)
	}
	switch {
	case t <= 0x7f:
		return int64(t), nil
	case t >= 0xe0:
		return int64(int8(t)), nil
	case t >= 0xa0 && t <= 0xbf:
		return d.str(int(t & 0x1f))
	case t >= 0x80 && t <= 0x8f:
		return d.dict(int(t&0x0f), depth)
	}
	switch t {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6:
		n, err := d.uint(1 << (t - 0xc4))
		if err != nil {
			return nil, err
		}
		b, err := d.take(int(min(n, math.MaxInt32+1)))
		if err != nil {
			return nil, err
		}
		return append([]byte(nil), b...), nil
	case 0xc7, 0xc8, 0xc9:
		n, err := d.uint(1 << (t - 0xc7))
		if err != nil {
			return nil, err
		}
		return d.ext(int(min(n, math.MaxInt32+1)), depth)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return d.ext(1<<(t-0xd4), depth)
	case 0xca:
		u, err := d.uint(4)
		return float64(math.Float32frombits(uint32(u))), err
	case 0xcb:
		u, err := d.uint(8)
		return math.Float64frombits(u), err
	case 0xcc, 0xcd, 0xce, 0xcf:
		u, err := d.uint(1 << (t - 0xcc))
		if err != nil {
			return nil, err
		}
		// Above 2^53 the width is what Lua keys on (uint64_t vs int64_t
		// cdata), so keep it; below, every integer is an int64.
		if u > maxExact {
			return u, nil
		}
		return int64(u), nil
	case 0xd0:
		u, err := d.uint(1)
		return int64(int8(u)), err
	case 0xd1:
		u, err := d.uint(2)
		return int64(int16(u)), err
	case 0xd2:
		u, err := d.uint(4)
		return int64(int32(u)), err
	case 0xd3:
		u, err := d.uint(8)
		return int64(u), err
	case 0xd9, 0xda, 0xdb:
		n, err := d.uint(1 << (t - 0xd9))
		if err != nil {
			return nil, err
		}
		return d.str(int(min(n, math.MaxInt32+1)))
	case 0xde, 0xdf:
		n, err := d.uint(2 << (t - 0xde))
		if err != nil {
			return nil, err
		}
		return d.dict(int(min(n, math.MaxInt32+1)), depth)
	}
	return nil, fmt.Errorf("%w: unknown type byte 0x%02x at offset %d", ErrCodec, t, d.pos-1)
}

func (d *decoder) str(n int) (any, error) {
	b, err := d.take(n)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// checkCount rejects a container header that claims more elements than bytes
// remain, before anything is allocated for it: every element takes a byte.
func (d *decoder) checkCount(n, perElem int) error {
	if n < 0 || (len(d.buf)-d.pos)/perElem < n {
		return fmt.Errorf("%w: truncated frame (%d elements announced, %d bytes left)", ErrCodec, n, len(d.buf)-d.pos)
	}
	return nil
}

func (d *decoder) array(n, depth int) (any, error) {
	a, err := d.arrayOf(n, depth)
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (d *decoder) arrayOf(n, depth int) ([]any, error) {
	if err := d.checkCount(n, 1); err != nil {
		return nil, err
	}
	a := make([]any, n)
	for i := range a {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a[i] = v
	}
	return a, nil
}

func (d *decoder) dict(n, depth int) (any, error) {
	if err := d.checkCount(n, 2); err != nil {
		return nil, err
	}
	m := make(map[string]any, n)
	var generic map[any]any
	for i := 0; i < n; i++ {
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if ks, ok := k.(string); ok && generic == nil {
			m[ks] = v
			continue
		}
		if !isHashable(k) {
			return nil, fmt.Errorf("%w: map key of type %T", ErrCodec, k)
		}
		if generic == nil {
			generic = make(map[any]any, n)
			for mk, mv := range m {
				generic[mk] = mv
			}
		}
		generic[k] = v
	}
	if generic != nil {
		return generic, nil
	}
	return m, nil
}

func isHashable(k any) bool {
	switch k.(type) {
	case nil, bool, int64, uint64, float64, string, Null, Handle:
		return true
	}
	return false
}

func (d *decoder) ext(n, depth int) (any, error) {
	tb, err := d.take(1)
	if err != nil {
		return nil, err
	}
	body, err := d.take(n)
	if err != nil {
		return nil, err
	}
	switch {
	case int8(tb[0]) == extNull && n == 0:
		return Null{}, nil
	case int8(tb[0]) == extHandle && n == 8:
		return Handle(binary.BigEndian.Uint64(body)), nil
	case int8(tb[0]) == extRecords:
		return records(body, depth)
	}
	return nil, fmt.Errorf("%w: unsupported extension type %d (length %d)", ErrCodec, int8(tb[0]), n)
}

// records decodes a Records payload into a []any of map[string]any.
func records(body []byte, depth int) (any, error) {
	d := decoder{buf: body}
	keys, err := d.recordsArray(depth)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		s, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%w: records key of type %T", ErrCodec, k)
		}
		names[i] = s
	}
	cells, err := d.recordsArray(depth)
	if err != nil {
		return nil, err
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	if len(names) == 0 && len(cells) > 0 || len(names) > 0 && len(cells)%len(names) != 0 {
		return nil, fmt.Errorf("%w: %d records cells for %d keys", ErrCodec, len(cells), len(names))
	}
	rows := make([]any, 0, len(cells)/max(len(names), 1))
	for len(cells) > 0 {
		row := make(map[string]any, len(names))
		for i, name := range names {
			row[name] = cells[i]
		}
		rows = append(rows, row)
		cells = cells[len(names):]
	}
	return rows, nil
}

// recordsArray reads one of the two arrays of a Records payload.
func (d *decoder) recordsArray(depth int) ([]any, error) {
	tb, err := d.take(1)
	if err != nil {
		return nil, err
	}
	n, isArray, err := d.arrayLen(tb[0])
	if err != nil {
		return nil, err
	}
	if !isArray {
		return nil, fmt.Errorf("%w: records payload without its arrays", ErrCodec)
	}
	return d.arrayOf(n, depth)
}

// Encoder appends MessagePack to Buf. The zero value is ready to use.
type Encoder struct {
	Buf []byte
	// Register turns a Go object found in a result into a handle. Nil means
	// objects are an error.
	Register func(Object) (Handle, error)
}

// Encode appends v.
func (e *Encoder) Encode(v any) error { return e.value(v, 0) }

func (e *Encoder) byte1(b byte) { e.Buf = append(e.Buf, b) }

func (e *Encoder) head(short, n int, b8, b16, b32 byte, shortMax int) {
	switch {
	case n <= shortMax:
		e.Buf = append(e.Buf, byte(short|n))
	case b8 != 0 && n <= math.MaxUint8:
		e.Buf = append(e.Buf, b8, byte(n))
	case n <= math.MaxUint16:
		e.Buf = append(e.Buf, b16, byte(n>>8), byte(n))
	default:
		e.Buf = append(e.Buf, b32)
		e.Buf = binary.BigEndian.AppendUint32(e.Buf, uint32(n))
	}
}

// String appends a msgpack str.
func (e *Encoder) String(s string) {
	e.head(0xa0, len(s), 0xd9, 0xda, 0xdb, 31)
	e.Buf = append(e.Buf, s...)
}

// Bytes appends a msgpack bin.
func (e *Encoder) Bytes(b []byte) {
	switch n := len(b); {
	case n <= math.MaxUint8:
		e.Buf = append(e.Buf, 0xc4, byte(n))
	case n <= math.MaxUint16:
		e.Buf = append(e.Buf, 0xc5, byte(n>>8), byte(n))
	default:
		e.Buf = append(e.Buf, 0xc6)
		e.Buf = binary.BigEndian.AppendUint32(e.Buf, uint32(n))
	}
	e.Buf = append(e.Buf, b...)
}

// ArrayHeader appends the header of an array of n values.
func (e *Encoder) ArrayHeader(n int) { e.head(0x90, n, 0, 0xdc, 0xdd, 15) }

// MapHeader appends the header of a map of n pairs.
func (e *Encoder) MapHeader(n int) { e.head(0x80, n, 0, 0xde, 0xdf, 15) }

// OpenArray appends the header of an array whose length is not known yet
// and returns where it is; SetArrayLen writes the length when it is.
func (e *Encoder) OpenArray() int {
	at := len(e.Buf)
	e.Buf = append(e.Buf, 0xdd, 0, 0, 0, 0)
	return at
}

// SetArrayLen writes n into the header OpenArray appended at `at`.
func (e *Encoder) SetArrayLen(at, n int) {
	binary.BigEndian.PutUint32(e.Buf[at+1:], uint32(n))
}

// Records marks an open Records value (see the package comment); the
// caller appends len(keys) cells per record, then calls End.
type Records struct {
	e              *Encoder
	start, cellsAt int
	keys, nrecords int
}

// BeginRecords appends the head of a Records value with these keys, each
// already encoded as a msgpack str (so callers can keep them across
// results).
func (e *Encoder) BeginRecords(keys [][]byte) Records {
	r := Records{e: e, start: len(e.Buf), keys: len(keys)}
	e.Buf = append(e.Buf, 0xc9, 0, 0, 0, 0, extRecords)
	e.ArrayHeader(len(keys))
	for _, k := range keys {
		e.Buf = append(e.Buf, k...)
	}
	r.cellsAt = e.OpenArray()
	return r
}

// Next counts one more record, whose cells the caller appends next.
func (r *Records) Next() { r.nrecords++ }

// End writes the lengths into the head.
func (r *Records) End() {
	r.e.SetArrayLen(r.cellsAt, r.nrecords*r.keys)
	binary.BigEndian.PutUint32(r.e.Buf[r.start+1:], uint32(len(r.e.Buf)-r.start-6))
}

// maxExact is 2^53: integers up to it are exact Lua numbers.
const maxExact = 1 << 53

// Int appends a signed integer in its shortest form. Beyond 2^53 it keeps
// the int64 form so Lua gets an int64_t (not a uint64_t) cdata.
func (e *Encoder) Int(i int64) {
	switch {
	case i > maxExact:
		e.byte1(0xd3)
		e.Buf = binary.BigEndian.AppendUint64(e.Buf, uint64(i))
	case i >= 0:
		e.Uint(uint64(i))
	case i >= -32:
		e.byte1(byte(int8(i)))
	case i >= math.MinInt8:
		e.Buf = append(e.Buf, 0xd0, byte(int8(i)))
	case i >= math.MinInt16:
		e.Buf = append(e.Buf, 0xd1, byte(i>>8), byte(i))
	case i >= math.MinInt32:
		e.byte1(0xd2)
		e.Buf = binary.BigEndian.AppendUint32(e.Buf, uint32(i))
	default:
		e.byte1(0xd3)
		e.Buf = binary.BigEndian.AppendUint64(e.Buf, uint64(i))
	}
}

// Uint appends an unsigned integer in its shortest form.
func (e *Encoder) Uint(u uint64) {
	switch {
	case u <= 0x7f:
		e.byte1(byte(u))
	case u <= math.MaxUint8:
		e.Buf = append(e.Buf, 0xcc, byte(u))
	case u <= math.MaxUint16:
		e.Buf = append(e.Buf, 0xcd, byte(u>>8), byte(u))
	case u <= math.MaxUint32:
		e.byte1(0xce)
		e.Buf = binary.BigEndian.AppendUint32(e.Buf, uint32(u))
	default:
		e.byte1(0xcf)
		e.Buf = binary.BigEndian.AppendUint64(e.Buf, u)
	}
}

// Float appends a float64.
func (e *Encoder) Float(f float64) {
	e.byte1(0xcb)
	e.Buf = binary.BigEndian.AppendUint64(e.Buf, math.Float64bits(f))
}

func (e *Encoder) value(v any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nesting deeper than %d", ErrCodec, maxDepth)
	}
	switch x := v.(type) {
	case nil:
		e.byte1(0xc0)
	case Null:
		e.Buf = append(e.Buf, 0xc7, 0, extNull)
	case Handle:
		e.Buf = append(e.Buf, 0xd7, extHandle)
		e.Buf = binary.BigEndian.AppendUint64(e.Buf, uint64(x))
	case Raw:
		e.Buf = append(e.Buf, x...)
	case *Reply:
		if x == nil {
			e.byte1(0xc0)
		} else {
			e.Buf = append(e.Buf, x.Buf...)
		}
	case bool:
		if x {
			e.byte1(0xc3)
		} else {
			e.byte1(0xc2)
		}
	case string:
		e.String(x)
	case []byte:
		e.Bytes(x)
	case int:
		e.Int(int64(x))
	case int8:
		e.Int(int64(x))
	case int16:
		e.Int(int64(x))
	case int32:
		e.Int(int64(x))
	case int64:
		e.Int(x)
	case uint:
		e.Uint(uint64(x))
	case uint8:
		e.Uint(uint64(x))
	case uint16:
		e.Uint(uint64(x))
	case uint32:
		e.Uint(uint64(x))
	case uint64:
		e.Uint(x)
	case float32:
		e.Float(float64(x))
	case float64:
		e.Float(x)
	case time.Time:
		e.String(x.Format(time.RFC3339Nano))
	case time.Duration:
		e.Int(int64(x / time.Millisecond))
	case error:
		e.String(x.Error())
	case []any:
		e.ArrayHeader(len(x))
		for _, it := range x {
			if err := e.value(it, depth+1); err != nil {
				return err
			}
		}
	case []string:
		e.ArrayHeader(len(x))
		for _, it := range x {
			e.String(it)
		}
	case map[string]any:
		e.MapHeader(len(x))
		// Sorted keys make the output deterministic (tests, caches).
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			e.String(k)
			if err := e.value(x[k], depth+1); err != nil {
				return err
			}
		}
	case map[any]any:
		e.MapHeader(len(x))
		for k, it := range x {
			if err := e.value(k, depth+1); err != nil {
				return err
			}
			if err := e.value(it, depth+1); err != nil {
				return err
			}
		}
	case Object:
		if e.Register == nil {
			return fmt.Errorf("%w: a Go object (%T) cannot be encoded here", ErrCodec, x)
		}
		h, err := e.Register(x)
		if err != nil {
			return err
		}
		return e.value(h, depth)
	default:
		return e.reflectValue(v, depth)
	}
	return nil
}

// reflectValue covers the remaining slices and maps (e.g. []int64,
// map[string]string) so modules can return ordinary Go values.
func (e *Encoder) reflectValue(v any, depth int) error {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		e.ArrayHeader(rv.Len())
		for i := 0; i < rv.Len(); i++ {
			if err := e.value(rv.Index(i).Interface(), depth+1); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		e.MapHeader(rv.Len())
		it := rv.MapRange()
		for it.Next() {
			if err := e.value(it.Key().Interface(), depth+1); err != nil {
				return err
			}
			if err := e.value(it.Value().Interface(), depth+1); err != nil {
				return err
			}
		}
		return nil
	case reflect.Pointer:
		if rv.IsNil() {
			e.byte1(0xc0)
			return nil
		}
		return e.value(rv.Elem().Interface(), depth)
	case reflect.String:
		e.String(rv.String())
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.Int(rv.Int())
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		e.Uint(rv.Uint())
		return nil
	case reflect.Float32, reflect.Float64:
		e.Float(rv.Float())
		return nil
	case reflect.Bool:
		return e.value(rv.Bool(), depth)
	}
	return fmt.Errorf("%w: cannot encode a value of type %T", ErrCodec, v)
}

// Encode is a convenience that returns a fresh buffer.
func Encode(v any) ([]byte, error) {
	var e Encoder
	err := e.Encode(v)
	return e.Buf, err
}

// ToString renders a scalar argument as text, the way Redis and friends
// accept numbers in place of strings.
func ToString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}
