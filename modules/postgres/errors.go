package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// pgError is a failure with structured fields for Lua's third return value.
type pgError struct {
	msg    string
	detail map[string]any
}

func (e *pgError) Error() string { return e.msg }
func (e *pgError) Detail() any   { return e.detail }

// wrapErr turns an error into what Lua sees: a server error keeps
// PostgreSQL's own text ("ERROR: ... (SQLSTATE 23505)") and its fields; a
// canceled context is left alone (the core reports "timeout"); anything else
// says what was being done.
func wrapErr(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	var already *pgError
	if errors.As(err, &already) {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		d := map[string]any{"code": pe.Code, "message": pe.Message, "severity": pe.Severity}
		for k, v := range map[string]string{
			"detail": pe.Detail, "hint": pe.Hint, "constraint": pe.ConstraintName, "table": pe.TableName,
			"column": pe.ColumnName, "schema": pe.SchemaName, "where": pe.Where, "datatype": pe.DataTypeName,
		} {
			if v != "" {
				d[k] = v
			}
		}
		if pe.Position != 0 {
			d["position"] = int64(pe.Position)
		}
		msg := pe.Error()
		if !errors.Is(err, pe) || err.Error() != msg {
			// a connect error: keep pgx's context (host, user; never the password)
			msg = "postgres: " + what + ": " + err.Error()
		}
		return &pgError{msg: msg, detail: d}
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}
