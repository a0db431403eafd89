package postgres

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// copyFrom: copy_from(table, columns, rows) -> rows copied. The rows are
// sent as CSV through COPY ... FROM STDIN (pgx's pgconn.CopyFrom); each value
// is written in the column type's text syntax, so the server converts
// exactly (bytea from raw bytes, arrays, json, numeric strings, ...).
func (r *Runtime) copyFrom(ctx context.Context, c *pgx.Conn, args []any) (int64, error) {
	table, err := argString(args, 0, "table")
	if err != nil {
		return 0, err
	}
	if len(args) < 3 {
		return 0, fmt.Errorf("postgres: copy_from: table, columns and rows expected")
	}
	cols, err := stringList(args[1], "columns")
	if err != nil {
		return 0, err
	}
	rows, err := anyList(args[2], "rows")
	if err != nil {
		return 0, err
	}
	if len(cols) == 0 {
		return 0, fmt.Errorf("postgres: copy_from: at least one column expected")
	}
	quoted := make([]string, len(cols))
	for i, col := range cols {
		quoted[i] = pgx.Identifier{col}.Sanitize()
	}
	colList := strings.Join(quoted, ", ")
	// the column types, from a statement that reads nothing
	sd, err := r.statement(ctx, c, "SELECT "+colList+" FROM "+quoteTable(table)+" LIMIT 0")
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	for i, row := range rows {
		vals, ok := row.([]any)
		if !ok || len(vals) != len(cols) {
			return 0, fmt.Errorf("postgres: copy_from: row %d must be an array of %d values", i+1, len(cols))
		}
		for j, v := range vals {
			if j > 0 {
				buf.WriteByte(',')
			}
			oid := sd.Fields[j].DataTypeOID
			var s string
			var null bool
			if sub, isTable := v.([]any); isTable && !isJSON(oid) {
				var b strings.Builder
				elem, _ := r.elemOID(oid)
				if err := arrayLiteral(&b, elem, sub, 0); err != nil {
					return 0, fmt.Errorf("postgres: copy_from: row %d column %s: %w", i+1, cols[j], err)
				}
				s = b.String()
			} else if s, null, err = textValue(oid, v); err != nil {
				return 0, fmt.Errorf("postgres: copy_from: row %d column %s: %w", i+1, cols[j], err)
			}
			if null {
				continue // unquoted empty = NULL in CSV
			}
			buf.WriteByte('"')
			buf.WriteString(strings.ReplaceAll(s, `"`, `""`))
			buf.WriteByte('"')
		}
		buf.WriteByte('\n')
	}
	tag, err := c.PgConn().CopyFrom(ctx, &buf, "COPY "+quoteTable(table)+" ("+colList+") FROM STDIN WITH (FORMAT csv)")
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func anyList(v any, what string) ([]any, error) {
	switch x := v.(type) {
	case []any:
		return x, nil
	case map[string]any:
		if len(x) == 0 {
			return nil, nil
		}
	}
	return nil, fmt.Errorf("postgres: %s must be an array, got %T", what, v)
}

func stringList(v any, what string) ([]string, error) {
	l, err := anyList(v, what)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(l))
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("postgres: %s[%d] must be a string", what, i+1)
		}
		out[i] = s
	}
	return out, nil
}
