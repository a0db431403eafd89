package postgres

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// Parameters arrive as Lua values and are converted with the parameter's
// type as the server described it, so that the server, not a guess on the
// client, parses anything that is not plainly a number, a boolean or bytes:
// strings travel in text format (exact for numeric, dates, uuid, inet, ...),
// Lua strings become bytes for bytea, tables become array literals or JSON.

const (
	oidBool        = 16
	oidBytea       = 17
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

func isJSON(oid uint32) bool { return oid == oidJSON || oid == oidJSONB }

// numericOID: types that take a Go int64/float64 directly.
func numericOID(oid uint32) bool {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidFloat4, oidFloat8, oidNumeric, oidOID:
		return true
	}
	return false
}

// convertParams turns decoded Lua arguments into values pgx encodes for the
// statement's parameter types.
func (r *Runtime) convertParams(oids []uint32, args []any) ([]any, error) {
	if len(oids) != len(args) {
		return nil, fmt.Errorf("postgres: the statement takes %d parameter(s), %d given", len(oids), len(args))
	}
	out := make([]any, len(args))
	for i, a := range args {
		v, err := r.param(oids[i], a)
		if err != nil {
			return nil, fmt.Errorf("postgres: parameter $%d: %w", i+1, err)
		}
		out[i] = v
	}
	return out, nil
}

func (r *Runtime) param(oid uint32, a any) (any, error) {
	switch x := a.(type) {
	case nil, core.Null:
		return nil, nil
	case string:
		if oid == oidBytea {
			return []byte(x), nil
		}
		return x, nil
	case []byte:
		if oid == oidBytea {
			return x, nil
		}
		return string(x), nil
	case bool:
		if oid == oidBool {
			return x, nil
		}
		if isJSON(oid) {
			return strconv.FormatBool(x), nil
		}
		return strconv.FormatBool(x), nil
	case int64:
		if numericOID(oid) {
			return x, nil
		}
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		if oid == oidFloat4 || oid == oidFloat8 {
			return x, nil
		}
		return formatFloat(x), nil
	case core.Handle:
		return nil, fmt.Errorf("a handle object cannot be a query parameter")
	case []any, map[string]any, map[any]any:
		if isJSON(oid) {
			b, err := json.Marshal(toJSONValue(a))
			if err != nil {
				return nil, err
			}
			return string(b), nil
		}
		elem, isArray := r.elemOID(oid)
		if !isArray && oid != 0 {
			return nil, fmt.Errorf("a table was given for a parameter of type %s (not an array or json)", r.typeName(oid))
		}
		var b strings.Builder
		if err := arrayLiteral(&b, elem, a, 0); err != nil {
			return nil, err
		}
		return b.String(), nil
	}
	return nil, fmt.Errorf("unsupported value of Go type %T", a)
}

func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// toJSONValue makes decoded Lua values marshalable by encoding/json.
func toJSONValue(v any) any {
	switch x := v.(type) {
	case core.Null:
		return nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toJSONValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = toJSONValue(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ks, _ := core.ToString(k)
			out[ks] = toJSONValue(e)
		}
		return out
	case []byte:
		return string(x)
	}
	return v
}

// textValue renders one scalar in PostgreSQL's text input syntax for a
// column/element of type oid (used by array literals and COPY).
func textValue(oid uint32, v any) (string, bool, error) {
	switch x := v.(type) {
	case nil, core.Null:
		return "", true, nil
	case string:
		if oid == oidBytea {
			return `\x` + hex.EncodeToString([]byte(x)), false, nil
		}
		return x, false, nil
	case []byte:
		if oid == oidBytea {
			return `\x` + hex.EncodeToString(x), false, nil
		}
		return string(x), false, nil
	case bool:
		if x {
			return "t", false, nil
		}
		return "f", false, nil
	case int64:
		return strconv.FormatInt(x, 10), false, nil
	case uint64:
		return strconv.FormatUint(x, 10), false, nil
	case float64:
		return formatFloat(x), false, nil
	case map[string]any, map[any]any, []any:
		if isJSON(oid) || oid == 0 {
			b, err := json.Marshal(toJSONValue(v))
			return string(b), false, err
		}
	}
	return "", false, fmt.Errorf("unsupported value %T for type oid %d", v, oid)
}

// arrayLiteral writes a Lua (nested) sequence as an array literal.
func arrayLiteral(b *strings.Builder, elem uint32, v any, depth int) error {
	if depth > 6 {
		return fmt.Errorf("arrays nest at most 6 levels")
	}
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case map[string]any:
		if len(x) != 0 {
			return fmt.Errorf("an array parameter must be a sequence, got a table with string keys")
		}
	case map[any]any:
		if len(x) != 0 {
			return fmt.Errorf("an array parameter must be a sequence (1..n)")
		}
	default:
		return fmt.Errorf("array expected, got %T", v)
	}
	b.WriteByte('{')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		if sub, ok := it.([]any); ok && !isJSON(elem) {
			if err := arrayLiteral(b, elem, sub, depth+1); err != nil {
				return err
			}
			continue
		}
		s, null, err := textValue(elem, it)
		if err != nil {
			return err
		}
		if null {
			b.WriteString("NULL")
			continue
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return nil
}

// elemOID returns the element type of an array type.
func (r *Runtime) elemOID(oid uint32) (uint32, bool) {
	if t, ok := r.typeMap.TypeForOID(oid); ok {
		if ac, ok := t.Codec.(*pgtype.ArrayCodec); ok {
			return ac.ElementType.OID, true
		}
		return 0, false
	}
	if ti := r.types.get(oid); ti != nil && ti.elem != 0 {
		return ti.elem, true
	}
	return 0, false
}
