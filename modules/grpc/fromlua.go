package grpc

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// fieldError is a conversion failure with the path of the field that
// caused it, built up while the error travels out of the recursion.
type fieldError struct {
	path []string // innermost first
	msg  string
}

func (e *fieldError) Error() string {
	var b strings.Builder
	for i := len(e.path) - 1; i >= 0; i-- {
		seg := e.path[i]
		if b.Len() > 0 && !strings.HasPrefix(seg, "[") {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	if b.Len() == 0 {
		return e.msg
	}
	return "field " + b.String() + ": " + e.msg
}

func errorf(format string, args ...any) error {
	return &fieldError{msg: fmt.Sprintf(format, args...)}
}

// at adds a path segment to a fieldError.
func at(err error, seg string) error {
	if fe, ok := err.(*fieldError); ok {
		fe.path = append(fe.path, seg)
	}
	return err
}

// describe names a Lua value for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nil"
	case core.Null:
		return "ngx.null"
	case bool:
		return "boolean"
	case int64, uint64, float64:
		return fmt.Sprintf("number %v", x)
	case string:
		if len(x) > 40 {
			x = x[:40] + "..."
		}
		return fmt.Sprintf("string %q", x)
	case []any, map[string]any, map[any]any:
		return "table"
	case core.Handle:
		return "handle object"
	}
	return fmt.Sprintf("%T", v)
}

// reader fills protobuf messages from decoded Lua values.
type reader struct {
	types *typeResolver
}

// newMessage builds a message of type md from the Lua value v.
func (r *reader) newMessage(md protoreflect.MessageDescriptor, v any) (*dynamicpb.Message, error) {
	m := dynamicpb.NewMessage(md)
	if err := r.fill(m, v, 0); err != nil {
		if fe, ok := err.(*fieldError); ok {
			return nil, fmt.Errorf("request %s: %s", md.FullName(), fe.Error())
		}
		return nil, err
	}
	return m, nil
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	_, null := v.(core.Null)
	return null
}

// fill sets the fields of m from the Lua table v.
func (r *reader) fill(m protoreflect.Message, v any, depth int) error {
	if depth > maxNesting {
		return errorf("nesting deeper than %d", maxNesting)
	}
	md := m.Descriptor()
	if kind := wellKnown(md.FullName()); kind != wktNone {
		if err, handled := r.wellKnown(kind, m, v, depth); handled {
			return err
		}
	}
	switch t := v.(type) {
	case map[string]any:
		fields := md.Fields()
		var oneofs map[protoreflect.FullName]string
		for k, val := range t {
			fd := fields.ByName(protoreflect.Name(k))
			if fd == nil {
				fd = fields.ByJSONName(k)
			}
			if fd == nil {
				return errorf("%s has no field %q", md.FullName(), k)
			}
			if isNil(val) && (fd.IsList() || fd.IsMap() || !holdsValue(fd)) {
				continue
			}
			if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
				if other, dup := oneofs[od.FullName()]; dup {
					pair := []string{other, string(fd.Name())}
					sort.Strings(pair)
					return errorf("oneof %s: both %s and %s are set", od.Name(), pair[0], pair[1])
				}
				if oneofs == nil {
					oneofs = map[protoreflect.FullName]string{}
				}
				oneofs[od.FullName()] = string(fd.Name())
			}
			if err := r.field(m, fd, val, depth); err != nil {
				return at(err, string(fd.Name()))
			}
		}
		return nil
	case []any:
		if len(t) == 0 {
			return nil
		}
	case nil, core.Null:
		return nil
	}
	return errorf("a table with the fields of %s expected, got %s", md.FullName(), describe(v))
}

// holdsValue says whether fd is a google.protobuf.Value, where ngx.null
// means the JSON null rather than "unset".
func holdsValue(fd protoreflect.FieldDescriptor) bool {
	return fd.Message() != nil && wellKnown(fd.Message().FullName()) == wktValue
}

// elements returns the items of a Lua array (an empty table decodes as an
// empty map).
func elements(v any) ([]any, bool) {
	switch t := v.(type) {
	case []any:
		return t, true
	case map[string]any:
		return nil, len(t) == 0
	case map[any]any:
		return nil, len(t) == 0
	}
	return nil, false
}

func (r *reader) field(m protoreflect.Message, fd protoreflect.FieldDescriptor, v any, depth int) error {
	switch {
	case fd.IsList():
		items, ok := elements(v)
		if !ok {
			return errorf("an array expected, got %s", describe(v))
		}
		l := m.Mutable(fd).List()
		for i, it := range items {
			val, err := r.value(fd, l.NewElement, it, depth)
			if err != nil {
				return at(err, "["+strconv.Itoa(i+1)+"]")
			}
			l.Append(val)
		}
	case fd.IsMap():
		mp := m.Mutable(fd).Map()
		kfd, vfd := fd.MapKey(), fd.MapValue()
		put := func(k, val any) error {
			key, err := scalar(kfd, k)
			if err != nil {
				return at(err, "[key "+describe(k)+"]")
			}
			if isNil(val) && !holdsValue(vfd) {
				return nil
			}
			pv, err := r.value(vfd, mp.NewValue, val, depth)
			if err != nil {
				return at(err, "["+fmt.Sprint(k)+"]")
			}
			mp.Set(key.MapKey(), pv)
			return nil
		}
		switch t := v.(type) {
		case map[string]any:
			for k, val := range t {
				if err := put(k, val); err != nil {
					return err
				}
			}
		case map[any]any:
			for k, val := range t {
				if err := put(k, val); err != nil {
					return err
				}
			}
		case []any: // a Lua table with keys 1..n
			for i, val := range t {
				if err := put(int64(i+1), val); err != nil {
					return err
				}
			}
		default:
			return errorf("a table expected for a map, got %s", describe(v))
		}
	default:
		val, err := r.value(fd, func() protoreflect.Value { return m.NewField(fd) }, v, depth)
		if err != nil {
			return err
		}
		m.Set(fd, val)
	}
	return nil
}

// value converts one singular value; newMsg makes an empty message when
// the field holds messages.
func (r *reader) value(fd protoreflect.FieldDescriptor, newMsg func() protoreflect.Value, v any, depth int) (protoreflect.Value, error) {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		mv := newMsg()
		if err := r.fill(mv.Message(), v, depth+1); err != nil {
			return protoreflect.Value{}, err
		}
		return mv, nil
	}
	return scalar(fd, v)
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	case float64:
		if x == math.Trunc(x) && x >= -(1<<63) && x < 1<<63 {
			return int64(x), true
		}
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return i, err == nil
	}
	return 0, false
}

func toUint64(v any) (uint64, bool) {
	switch x := v.(type) {
	case int64:
		if x >= 0 {
			return uint64(x), true
		}
	case uint64:
		return x, true
	case float64:
		if x == math.Trunc(x) && x >= 0 && x < 1<<64 {
			return uint64(x), true
		}
	case string:
		u, err := strconv.ParseUint(strings.TrimSpace(x), 10, 64)
		return u, err == nil
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	case string:
		switch x {
		case "NaN", "nan":
			return math.NaN(), true
		case "Infinity", "inf":
			return math.Inf(1), true
		case "-Infinity", "-inf":
			return math.Inf(-1), true
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	return 0, false
}

// scalar converts a Lua value for a scalar or enum field.
func scalar(fd protoreflect.FieldDescriptor, v any) (protoreflect.Value, error) {
	kind := fd.Kind()
	switch kind {
	case protoreflect.BoolKind:
		if b, ok := v.(bool); ok {
			return protoreflect.ValueOfBool(b), nil
		}
		if s, ok := v.(string); ok && (s == "true" || s == "false") {
			return protoreflect.ValueOfBool(s == "true"), nil
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		if i, ok := toInt64(v); ok {
			if i < math.MinInt32 || i > math.MaxInt32 {
				return protoreflect.Value{}, errorf("%d out of range for %s", i, kind)
			}
			return protoreflect.ValueOfInt32(int32(i)), nil
		}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if i, ok := toInt64(v); ok {
			return protoreflect.ValueOfInt64(i), nil
		}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		if u, ok := toUint64(v); ok {
			if u > math.MaxUint32 {
				return protoreflect.Value{}, errorf("%d out of range for %s", u, kind)
			}
			return protoreflect.ValueOfUint32(uint32(u)), nil
		}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if u, ok := toUint64(v); ok {
			return protoreflect.ValueOfUint64(u), nil
		}
	case protoreflect.FloatKind:
		if f, ok := toFloat(v); ok {
			return protoreflect.ValueOfFloat32(float32(f)), nil
		}
	case protoreflect.DoubleKind:
		if f, ok := toFloat(v); ok {
			return protoreflect.ValueOfFloat64(f), nil
		}
	case protoreflect.StringKind:
		if s, ok := v.(string); ok {
			if !utf8.ValidString(s) {
				return protoreflect.Value{}, errorf("string is not valid UTF-8 (use a bytes field for binary data)")
			}
			return protoreflect.ValueOfString(s), nil
		}
	case protoreflect.BytesKind:
		switch x := v.(type) {
		case string:
			return protoreflect.ValueOfBytes([]byte(x)), nil
		case []byte:
			return protoreflect.ValueOfBytes(x), nil
		}
	case protoreflect.EnumKind:
		ed := fd.Enum()
		switch x := v.(type) {
		case string:
			if ev := ed.Values().ByName(protoreflect.Name(x)); ev != nil {
				return protoreflect.ValueOfEnum(ev.Number()), nil
			}
			return protoreflect.Value{}, errorf("%s has no value %q", ed.FullName(), x)
		default:
			if i, ok := toInt64(v); ok && i >= math.MinInt32 && i <= math.MaxInt32 {
				if _, isStr := v.(string); !isStr {
					return protoreflect.ValueOfEnum(protoreflect.EnumNumber(i)), nil
				}
			}
		}
		return protoreflect.Value{}, errorf("%s value name or number expected, got %s", ed.FullName(), describe(v))
	}
	return protoreflect.Value{}, errorf("%s expected, got %s", kindWant(kind), describe(v))
}

func kindWant(k protoreflect.Kind) string {
	switch k {
	case protoreflect.BoolKind:
		return "boolean"
	case protoreflect.StringKind:
		return "string"
	case protoreflect.BytesKind:
		return "string (bytes)"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "number"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return k.String() + " (integer, decimal string or int64 cdata)"
	}
	return k.String() + " (integer)"
}

// ---------------------------------------------------------------- well-known types

// wellKnown fills a well-known type from its natural Lua form. handled is
// false when v should be read as an ordinary table of fields instead.
func (r *reader) wellKnown(kind wkt, m protoreflect.Message, v any, depth int) (err error, handled bool) {
	switch kind {
	case wktTimestamp:
		var secs, nanos int64
		switch x := v.(type) {
		case string:
			t, perr := time.Parse(time.RFC3339Nano, x)
			if perr != nil {
				return errorf("google.protobuf.Timestamp: RFC 3339 time expected, got %q", x), true
			}
			secs, nanos = t.Unix(), int64(t.Nanosecond())
		case int64, float64:
			f, _ := toFloat(x)
			if !(f >= minTimestamp-1 && f <= maxTimestamp+1) { // also refuses NaN
				return errorf("google.protobuf.Timestamp: %v seconds is out of range (years 1 to 9999)", x), true
			}
			secs, nanos = splitSeconds(f)
		default:
			return nil, false
		}
		if secs < minTimestamp || secs > maxTimestamp {
			return errorf("google.protobuf.Timestamp: %v is out of range (years 1 to 9999)", describe(v)), true
		}
		m.Set(byName(m, "seconds"), protoreflect.ValueOfInt64(secs))
		m.Set(byName(m, "nanos"), protoreflect.ValueOfInt32(int32(nanos)))
		return nil, true
	case wktDuration:
		var secs, nanos int64
		switch x := v.(type) {
		case string:
			var perr error
			if secs, nanos, perr = parseDuration(x); perr != nil {
				return errorf("google.protobuf.Duration: %v", perr), true
			}
		case int64, float64:
			f, _ := toFloat(x)
			if !(math.Abs(f) <= maxDuration) { // also refuses NaN
				return errorf("google.protobuf.Duration: %v seconds is out of range (10000 years)", x), true
			}
			secs, nanos = splitDuration(f)
		default:
			return nil, false
		}
		if secs < -maxDuration || secs > maxDuration {
			return errorf("google.protobuf.Duration: %v is out of range (10000 years)", describe(v)), true
		}
		m.Set(byName(m, "seconds"), protoreflect.ValueOfInt64(secs))
		m.Set(byName(m, "nanos"), protoreflect.ValueOfInt32(int32(nanos)))
		return nil, true
	case wktStruct:
		if _, isArr := v.([]any); isArr && len(v.([]any)) > 0 {
			return errorf("google.protobuf.Struct: a table with string keys expected, got an array"), true
		}
		return r.field(m, byName(m, "fields"), v, depth), true
	case wktList:
		return r.field(m, byName(m, "values"), v, depth), true
	case wktValue:
		return r.jsonValue(m, v, depth), true
	case wktWrapper:
		if _, isTable := v.(map[string]any); isTable {
			return nil, false
		}
		fd := byName(m, "value")
		val, err := scalar(fd, v)
		if err != nil {
			return err, true
		}
		m.Set(fd, val)
		return nil, true
	case wktAny:
		return r.any(m, v, depth), true
	}
	return nil, false
}

// The ranges the protobuf JSON mapping allows: 0001-01-01 to 9999-12-31
// for a Timestamp, 10000 years either way for a Duration. Beyond them a
// value would not come back from the text form a reply gives Lua.
const (
	minTimestamp = -62135596800
	maxTimestamp = 253402300799
	maxDuration  = 315576000000
)

// splitDuration: a Duration's seconds and nanos carry the same sign, and
// nanos stay below a second.
func splitDuration(f float64) (int64, int64) {
	secs := math.Trunc(f)
	nanos := math.Round((f - secs) * 1e9)
	switch {
	case nanos >= 1e9:
		secs, nanos = secs+1, nanos-1e9
	case nanos <= -1e9:
		secs, nanos = secs-1, nanos+1e9
	}
	return int64(secs), int64(nanos)
}

func splitSeconds(f float64) (int64, int64) {
	secs := math.Floor(f)
	nanos := math.Round((f - secs) * 1e9)
	if nanos >= 1e9 {
		secs++
		nanos -= 1e9
	}
	return int64(secs), int64(nanos)
}

// parseDuration reads the JSON form of a Duration: "-1.5s".
func parseDuration(s string) (int64, int64, error) {
	if !strings.HasSuffix(s, "s") {
		return 0, 0, fmt.Errorf("a string like \"1.5s\" expected, got %q", s)
	}
	body := strings.TrimSuffix(s, "s")
	neg := strings.HasPrefix(body, "-")
	body = strings.TrimPrefix(body, "-")
	whole, frac, dot := strings.Cut(body, ".")
	// digits only: ParseInt alone would take a second sign ("--5s", "5.-1s")
	if !isDigits(whole) || (dot && (!isDigits(frac) || len(frac) > 9)) {
		return 0, 0, fmt.Errorf("a string like \"1.5s\" expected, got %q", s)
	}
	secs, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || secs > maxDuration {
		return 0, 0, fmt.Errorf("%q is out of range (10000 years)", s)
	}
	var nanos int64
	if frac != "" {
		n, err := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("a string like \"1.5s\" expected, got %q", s)
		}
		nanos = n
	}
	if neg {
		secs, nanos = -secs, -nanos
	}
	return secs, nanos, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// jsonValue fills a google.protobuf.Value from any Lua value.
func (r *reader) jsonValue(m protoreflect.Message, v any, depth int) error {
	set := func(name string, val protoreflect.Value) { m.Set(byName(m, name), val) }
	switch x := v.(type) {
	case nil, core.Null:
		set("null_value", protoreflect.ValueOfEnum(0))
	case bool:
		set("bool_value", protoreflect.ValueOfBool(x))
	case int64, uint64, float64:
		f, _ := toFloat(x)
		set("number_value", protoreflect.ValueOfFloat64(f))
	case string:
		if !utf8.ValidString(x) {
			return errorf("google.protobuf.Value: string is not valid UTF-8")
		}
		set("string_value", protoreflect.ValueOfString(x))
	case []any:
		fd := byName(m, "list_value")
		lv := m.NewField(fd)
		if err := r.fill(lv.Message(), x, depth+1); err != nil {
			return err
		}
		m.Set(fd, lv)
	case map[string]any:
		fd := byName(m, "struct_value")
		sv := m.NewField(fd)
		if err := r.fill(sv.Message(), x, depth+1); err != nil {
			return err
		}
		m.Set(fd, sv)
	default:
		return errorf("google.protobuf.Value: cannot hold %s", describe(v))
	}
	return nil
}

// any packs {["@type"] = url, fields...} (or {["@type"] = url, value = v}
// for a well-known type, or value = <bytes> for a type not loaded).
func (r *reader) any(m protoreflect.Message, v any, depth int) error {
	t, ok := v.(map[string]any)
	if !ok {
		return errorf("google.protobuf.Any: a table with \"@type\" expected, got %s", describe(v))
	}
	url, ok := t["@type"].(string)
	if !ok {
		return errorf("google.protobuf.Any: the \"@type\" key (a type URL) is missing")
	}
	if !utf8.ValidString(url) {
		return errorf("google.protobuf.Any: the type URL is not valid UTF-8")
	}
	md, err := r.types.messageByURL(url)
	var raw []byte
	if err != nil {
		b, isStr := t["value"].(string)
		if !isStr || len(t) != 2 {
			return errorf("google.protobuf.Any: %v", err)
		}
		raw = []byte(b)
	} else {
		inner := dynamicpb.NewMessage(md)
		var body any = t["value"]
		if wellKnown(md.FullName()) == wktNone {
			rest := make(map[string]any, len(t))
			for k, val := range t {
				if k != "@type" {
					rest[k] = val
				}
			}
			body = rest
		}
		if err := r.fill(inner, body, depth+1); err != nil {
			return at(err, "("+string(md.FullName())+")")
		}
		mo := proto.MarshalOptions{Deterministic: true}
		if raw, err = mo.Marshal(inner); err != nil {
			return errorf("google.protobuf.Any %s: %v", url, err)
		}
	}
	m.Set(byName(m, "type_url"), protoreflect.ValueOfString(url))
	m.Set(byName(m, "value"), protoreflect.ValueOfBytes(raw))
	return nil
}
