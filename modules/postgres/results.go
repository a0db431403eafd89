package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// Results are encoded straight from the wire bytes into the MessagePack
// reply (a core.Reply), without building Go values per cell:
//
//	[ {names...}, {type names...}, { {row1...}, ... }, command_tag, affected ]
//
// A few types are read in binary format (bool, integers, floats, bytea,
// text); every other type is read in PostgreSQL's text format, which is the
// exact canonical form (numeric, interval, inet, uuid, enums, unknown types),
// with dates and timestamps turned into ISO 8601 ('T' between date and time).
// Arrays are read in text format and parsed into nested Lua arrays.

// binaryResults are the result types read in binary format; the rest are text.
var binaryResults = pgx.QueryResultFormatsByOID{
	oidBool: 1, oidInt2: 1, oidInt4: 1, oidInt8: 1, oidFloat4: 1, oidFloat8: 1,
	oidBytea: 1, oidOID: 1, oidText: 1, oidVarchar: 1, oidBPChar: 1, oidName: 1,
}

// typeInfo describes a type the pgx type map does not know (enums,
// domains, extension types, arrays of those).
type typeInfo struct {
	name string
	elem uint32 // element type of an array
}

type typeCache struct {
	mu sync.RWMutex
	m  map[uint32]*typeInfo
}

func (c *typeCache) get(oid uint32) *typeInfo {
	c.mu.RLock()
	t := c.m[oid]
	c.mu.RUnlock()
	return t
}

// learn looks up the unknown types among oids in pg_type (once per worker).
func (r *Runtime) learnTypes(ctx context.Context, conn *pgx.Conn, fields []pgconn.FieldDescription) error {
	var missing []uint32
	for _, f := range fields {
		if _, ok := r.typeMap.TypeForOID(f.DataTypeOID); ok {
			continue
		}
		if r.types.get(f.DataTypeOID) == nil {
			missing = append(missing, f.DataTypeOID)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	rows, err := conn.Query(ctx, "SELECT oid::int8, typname::text, typelem::int8 FROM pg_catalog.pg_type WHERE oid = ANY($1::oid[])",
		pgx.QueryExecModeExec, missing)
	if err != nil {
		return err
	}
	found := map[uint32]*typeInfo{}
	for rows.Next() {
		var oid, elem int64
		var name string
		if err := rows.Scan(&oid, &name, &elem); err != nil {
			rows.Close()
			return err
		}
		found[uint32(oid)] = &typeInfo{name: name, elem: uint32(elem)}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	r.types.mu.Lock()
	for _, oid := range missing {
		ti := found[oid]
		if ti == nil {
			ti = &typeInfo{name: "oid" + strconv.FormatUint(uint64(oid), 10)}
		}
		r.types.m[oid] = ti
	}
	r.types.mu.Unlock()
	return nil
}

func (r *Runtime) typeName(oid uint32) string {
	if t, ok := r.typeMap.TypeForOID(oid); ok {
		return t.Name
	}
	if ti := r.types.get(oid); ti != nil {
		return ti.name
	}
	return "oid" + strconv.FormatUint(uint64(oid), 10)
}

// resultWriter encodes one result set at the end of e.Buf. Writers are
// pooled with their scratch slices.
type resultWriter struct {
	r       *Runtime
	e       *core.Encoder
	oids    []uint32
	formats []int16
	keyed   bool     // rows as maps keyed by column name (else arrays)
	records bool     // keyed rows written as a Records value
	names   [][]byte // encoded column names
	rows    core.Records
	countAt int // where the rows array's header is (OpenArray)
	n       int
}

var writerPool = sync.Pool{New: func() any { return &resultWriter{} }}

// begin writes the header fields up to the rows. Keyed rows are a Records
// value (core/codec.go): the column names are decoded once per result, not
// once per row. Rows without columns (SELECT FROM t) are empty maps in an
// array, as Records cannot count them.
func (w *resultWriter) begin(fields []pgconn.FieldDescription) {
	w.e.Buf = append(w.e.Buf, 0x95) // fixarray of 5
	w.n = 0
	w.oids = w.oids[:0]
	w.formats = w.formats[:0]
	w.e.ArrayHeader(len(fields))
	w.names = w.names[:0]
	for _, f := range fields {
		at := len(w.e.Buf)
		w.e.String(f.Name)
		w.names = append(w.names, w.e.Buf[at:len(w.e.Buf):len(w.e.Buf)])
		w.oids = append(w.oids, f.DataTypeOID)
		w.formats = append(w.formats, f.Format)
	}
	w.e.ArrayHeader(len(fields))
	for _, f := range fields {
		w.e.String(w.r.typeName(f.DataTypeOID))
	}
	w.records = w.keyed && len(fields) > 0
	if w.records {
		w.rows = w.e.BeginRecords(w.names)
		return
	}
	w.countAt = w.e.OpenArray()
}

func (w *resultWriter) row(raw [][]byte) error {
	if len(raw) != len(w.oids) {
		return fmt.Errorf("postgres: a row of %d columns in a result of %d", len(raw), len(w.oids))
	}
	switch {
	case w.records:
		w.rows.Next()
	case w.keyed:
		w.e.MapHeader(0) // no columns
	default:
		w.e.ArrayHeader(len(raw))
	}
	for i, v := range raw {
		if err := w.r.cell(w.e, w.oids[i], w.formats[i], v); err != nil {
			return fmt.Errorf("postgres: column %d: %w", i+1, err)
		}
	}
	w.n++
	return nil
}

// finish patches the row count and appends the command tag and count.
func (w *resultWriter) finish(tag pgconn.CommandTag) {
	if w.records {
		w.rows.End()
	} else {
		w.e.SetArrayLen(w.countAt, w.n)
	}
	w.e.String(tag.String())
	w.e.Int(tag.RowsAffected())
}

// cell encodes one value.
func (r *Runtime) cell(e *core.Encoder, oid uint32, format int16, v []byte) error {
	if v == nil {
		e.Encode(core.Null{})
		return nil
	}
	if format == 1 {
		return binaryCell(e, oid, v)
	}
	return r.textCell(e, oid, v)
}

func binaryCell(e *core.Encoder, oid uint32, v []byte) error {
	switch oid {
	case oidBool:
		if len(v) != 1 {
			return fmt.Errorf("bad bool")
		}
		e.Encode(v[0] != 0)
	case oidInt2:
		if len(v) != 2 {
			return fmt.Errorf("bad int2")
		}
		e.Int(int64(int16(binary.BigEndian.Uint16(v))))
	case oidInt4:
		if len(v) != 4 {
			return fmt.Errorf("bad int4")
		}
		e.Int(int64(int32(binary.BigEndian.Uint32(v))))
	case oidOID:
		if len(v) != 4 {
			return fmt.Errorf("bad oid")
		}
		e.Int(int64(binary.BigEndian.Uint32(v)))
	case oidInt8:
		if len(v) != 8 {
			return fmt.Errorf("bad int8")
		}
		e.Int(int64(binary.BigEndian.Uint64(v)))
	case oidFloat4:
		if len(v) != 4 {
			return fmt.Errorf("bad float4")
		}
		e.Float(float64(math.Float32frombits(binary.BigEndian.Uint32(v))))
	case oidFloat8:
		if len(v) != 8 {
			return fmt.Errorf("bad float8")
		}
		e.Float(math.Float64frombits(binary.BigEndian.Uint64(v)))
	case oidBytea:
		e.Bytes(v)
	default:
		// text-like types: the binary form is the text
		e.Buf = appendStr(e.Buf, v)
	}
	return nil
}

func appendStr(buf []byte, v []byte) []byte {
	n := len(v)
	switch {
	case n <= 31:
		buf = append(buf, byte(0xa0|n))
	case n <= math.MaxUint8:
		buf = append(buf, 0xd9, byte(n))
	case n <= math.MaxUint16:
		buf = append(buf, 0xda, byte(n>>8), byte(n))
	default:
		buf = append(buf, 0xdb)
		buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	}
	return append(buf, v...)
}

// textCell decodes a value in text format.
func (r *Runtime) textCell(e *core.Encoder, oid uint32, v []byte) error {
	switch oid {
	case oidBool:
		e.Encode(len(v) > 0 && v[0] == 't')
	case oidInt2, oidInt4, oidInt8, oidOID:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return err
		}
		e.Int(n)
	case oidFloat4, oidFloat8:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return err
		}
		e.Float(f)
	case oidBytea:
		b, err := decodeByteaText(v)
		if err != nil {
			return err
		}
		e.Bytes(b)
	case oidTimestamp, oidTimestamptz:
		if len(v) > 10 && v[10] == ' ' {
			e.Buf = appendStr(e.Buf, v)
			e.Buf[len(e.Buf)-len(v)+10] = 'T'
		} else {
			e.Buf = appendStr(e.Buf, v)
		}
	case oidJSON, oidJSONB:
		if r.set.decodeJSON {
			return encodeJSON(e, v)
		}
		e.Buf = appendStr(e.Buf, v)
	default:
		if elem, ok := r.elemOID(oid); ok {
			return r.textArray(e, elem, v)
		}
		e.Buf = appendStr(e.Buf, v)
	}
	return nil
}

func decodeByteaText(v []byte) ([]byte, error) {
	if len(v) >= 2 && v[0] == '\\' && v[1] == 'x' {
		out := make([]byte, hex.DecodedLen(len(v)-2))
		_, err := hex.Decode(out, v[2:])
		return out, err
	}
	// escape format (bytea_output = escape)
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' {
			out = append(out, v[i])
			continue
		}
		if i+1 < len(v) && v[i+1] == '\\' {
			out = append(out, '\\')
			i++
			continue
		}
		if i+3 < len(v) {
			n, err := strconv.ParseUint(string(v[i+1:i+4]), 8, 8)
			if err != nil {
				return nil, err
			}
			out = append(out, byte(n))
			i += 3
			continue
		}
		return nil, fmt.Errorf("bad bytea escape")
	}
	return out, nil
}

func encodeJSON(e *core.Encoder, v []byte) error {
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return err
	}
	return e.Encode(fromJSON(x))
}

func fromJSON(x any) any {
	switch t := x.(type) {
	case nil:
		return core.Null{}
	case json.Number:
		if n, err := t.Int64(); err == nil {
			return n
		}
		f, _ := t.Float64()
		return f
	case []any:
		for i := range t {
			t[i] = fromJSON(t[i])
		}
		return t
	case map[string]any:
		for k := range t {
			t[k] = fromJSON(t[k])
		}
		return t
	}
	return x
}

// textArray parses an array in text format, e.g. {1,NULL,"a b"} or
// [0:1]={{1,2},{3,4}}, and encodes nested arrays of decoded elements.
func (r *Runtime) textArray(e *core.Encoder, elem uint32, v []byte) error {
	if len(v) > 0 && v[0] == '[' { // explicit bounds: skip "[l:u]..="
		i := bytes.IndexByte(v, '=')
		if i < 0 {
			return fmt.Errorf("bad array literal")
		}
		v = v[i+1:]
	}
	p := arrayParser{src: v}
	node, err := p.parse()
	if err != nil {
		return err
	}
	return r.encodeArrayNode(e, elem, node)
}

type arrayNode struct {
	items []arrayNode
	val   []byte
	null  bool
	leaf  bool
}

type arrayParser struct {
	src []byte
	pos int
}

func (p *arrayParser) parse() (arrayNode, error) {
	if p.pos >= len(p.src) || p.src[p.pos] != '{' {
		return arrayNode{}, fmt.Errorf("bad array literal")
	}
	p.pos++
	var n arrayNode
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '}':
			p.pos++
			return n, nil
		case c == ',':
			p.pos++
		case c == '{':
			sub, err := p.parse()
			if err != nil {
				return n, err
			}
			n.items = append(n.items, sub)
		case c == '"':
			p.pos++
			var b []byte
			for p.pos < len(p.src) && p.src[p.pos] != '"' {
				if p.src[p.pos] == '\\' && p.pos+1 < len(p.src) {
					p.pos++
				}
				b = append(b, p.src[p.pos])
				p.pos++
			}
			p.pos++
			if b == nil {
				b = []byte{}
			}
			n.items = append(n.items, arrayNode{leaf: true, val: b})
		default:
			start := p.pos
			for p.pos < len(p.src) && p.src[p.pos] != ',' && p.src[p.pos] != '}' {
				p.pos++
			}
			tok := bytes.TrimSpace(p.src[start:p.pos])
			if len(tok) == 4 && bytes.EqualFold(tok, []byte("NULL")) {
				n.items = append(n.items, arrayNode{leaf: true, null: true})
			} else {
				n.items = append(n.items, arrayNode{leaf: true, val: tok})
			}
		}
	}
	return n, fmt.Errorf("unterminated array literal")
}

func (r *Runtime) encodeArrayNode(e *core.Encoder, elem uint32, n arrayNode) error {
	e.ArrayHeader(len(n.items))
	for _, it := range n.items {
		var err error
		switch {
		case !it.leaf:
			err = r.encodeArrayNode(e, elem, it)
		case it.null:
			e.Encode(core.Null{})
		default:
			err = r.textCell(e, elem, it.val)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
