// Package postgres is the runtime behind resty.ffi.postgres: PostgreSQL
// through pgx/v5 and pgxpool, with one pool per distinct connection
// configuration per nginx worker.
//
// Operations (args after the op name; results are documented in
// docs/postgres.md and shaped by lua/resty/ffi/postgres.lua):
//
//	query sql args...          one statement, extended protocol, prepared and
//	                           cached per connection -> result with rows keyed
//	                           by column name (see results.go)
//	query_array sql args...    the same with rows as arrays (query_one/value)
//	prepare name sql           register a named statement (checked once now)
//	execute name args...       run a named statement -> result
//	simple sql                 simple protocol, several statements -> results
//	batch {{sql, args...}...}  pipelined (SendBatch) -> results in order
//	copy_from table cols rows  COPY ... FROM STDIN -> rows copied
//	begin opts                 -> transaction object (tx.go)
//	listen channels            -> listener object (listen.go)
//	notify channel payload     pg_notify
//	stats                      pool statistics
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

func init() { core.Register("postgres", New) }

// sharedPool is one pgxpool used by every runtime with the same connection
// and pool settings.
type sharedPool struct {
	pool *pgxpool.Pool
	refs int
}

var (
	poolsMu sync.Mutex
	pools   = map[string]*sharedPool{}
)

// Runtime is one resty.ffi.postgres configuration.
type Runtime struct {
	set     *settings
	pool    *pgxpool.Pool
	typeMap *pgtype.Map // read only: type names and array element types
	types   *typeCache

	mu        sync.Mutex
	named     map[string]string // prepare(name, sql)
	closed    bool
	closeOnce sync.Once
}

// New creates a runtime. It does no I/O: pgxpool connects on first use.
func New(opts core.Options) (core.Object, error) {
	s, err := parseSettings(opts)
	if err != nil {
		return nil, err
	}
	poolsMu.Lock()
	defer poolsMu.Unlock()
	sp := pools[s.poolKey]
	if sp == nil {
		p, err := pgxpool.NewWithConfig(context.Background(), s.pool)
		if err != nil {
			return nil, fmt.Errorf("postgres: creating the pool: %w", err)
		}
		sp = &sharedPool{pool: p}
		pools[s.poolKey] = sp
	}
	sp.refs++
	return &Runtime{
		set: s, pool: sp.pool, typeMap: pgtype.NewMap(),
		types: &typeCache{m: map[uint32]*typeInfo{}}, named: map[string]string{},
	}, nil
}

// Close releases the runtime's reference on its pool; the last one closes it.
func (r *Runtime) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		poolsMu.Lock()
		sp := pools[r.set.poolKey]
		last := false
		if sp != nil {
			sp.refs--
			if sp.refs <= 0 {
				delete(pools, r.set.poolKey)
				last = true
			}
		}
		poolsMu.Unlock()
		if last {
			done := make(chan struct{})
			go func() {
				defer func() { _ = recover() }()
				sp.pool.Close()
				close(done)
			}()
			select {
			case <-done:
			case <-ctx.Done():
			}
		}
	})
	return nil
}

// withConn runs f on a pooled connection.
func (r *Runtime) withConn(ctx context.Context, what string, f func(*pgx.Conn) error) error {
	c, err := r.pool.Acquire(ctx)
	if err != nil {
		return wrapErr(ctx, "acquiring a connection", err)
	}
	defer c.Release()
	if err := f(c.Conn()); err != nil {
		return wrapErr(ctx, what, err)
	}
	return nil
}

// Call serves the runtime's operations.
func (r *Runtime) Call(ctx context.Context, op string, args []any) (any, error) {
	if connOps[op] {
		var res any
		err := r.withConn(ctx, op, func(c *pgx.Conn) error {
			var err error
			res, err = r.onConn(ctx, c, op, args)
			return err
		})
		return res, err
	}
	switch op {
	case "prepare":
		return r.prepareNamed(ctx, args)
	case "begin":
		return r.begin(ctx, args)
	case "listen":
		return r.listen(ctx, args)
	case "notify":
		ch, err := argString(args, 0, "channel")
		if err != nil {
			return nil, err
		}
		payload := ""
		if len(args) > 1 && args[1] != nil {
			payload, _ = core.ToString(args[1])
		}
		err = r.withConn(ctx, "notify", func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SELECT pg_notify($1, $2)", ch, payload)
			return err
		})
		return err == nil, err
	case "stats":
		s := r.pool.Stat()
		return map[string]any{
			"total_conns": s.TotalConns(), "idle_conns": s.IdleConns(), "acquired_conns": s.AcquiredConns(),
			"max_conns": s.MaxConns(), "acquire_count": s.AcquireCount(), "empty_acquire_count": s.EmptyAcquireCount(),
			"canceled_acquire_count": s.CanceledAcquireCount(), "new_conns_count": s.NewConnsCount(),
		}, nil
	case "ping":
		err := r.withConn(ctx, "ping", func(c *pgx.Conn) error { return c.Ping(ctx) })
		return err == nil, err
	}
	return nil, core.UnknownOp("postgres", op)
}

// connOps run on one connection: a pooled one, or a transaction's.
var connOps = map[string]bool{"query": true, "query_array": true, "execute": true, "simple": true, "batch": true, "copy_from": true}

func (r *Runtime) onConn(ctx context.Context, c *pgx.Conn, op string, args []any) (any, error) {
	switch op {
	case "query", "query_array", "simple":
		sql, err := argString(args, 0, "sql")
		if err != nil {
			return nil, err
		}
		if op == "simple" {
			return r.simple(ctx, c, sql)
		}
		return r.query(ctx, c, sql, args[1:], op == "query")
	case "execute":
		name, err := argString(args, 0, "name")
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		sql, ok := r.named[name]
		r.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("postgres: execute: no statement named %q (prepare it first)", name)
		}
		return r.query(ctx, c, sql, args[1:], true)
	case "batch":
		return r.batch(ctx, c, args)
	case "copy_from":
		return r.copyFrom(ctx, c, args)
	}
	return nil, core.UnknownOp("postgres", op)
}

func argString(args []any, i int, what string) (string, error) {
	if i >= len(args) {
		return "", fmt.Errorf("postgres: argument %s missing", what)
	}
	s, ok := args[i].(string)
	if !ok {
		return "", fmt.Errorf("postgres: argument %s must be a string, got %T", what, args[i])
	}
	return s, nil
}

// prepareNamed registers name -> sql and checks the statement once.
func (r *Runtime) prepareNamed(ctx context.Context, args []any) (any, error) {
	name, err := argString(args, 0, "name")
	if err != nil {
		return nil, err
	}
	sql, err := argString(args, 1, "sql")
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	old, ok := r.named[name]
	r.mu.Unlock()
	if ok {
		if old != sql {
			return nil, fmt.Errorf("postgres: prepare: statement %q already exists with different SQL", name)
		}
		return true, nil
	}
	err = r.withConn(ctx, "prepare "+name, func(c *pgx.Conn) error {
		_, err := r.statement(ctx, c, sql)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.named[name] = sql
	r.mu.Unlock()
	return true, nil
}

// connState is what a runtime keeps on each connection.
type connState struct {
	described map[string]*pgconn.StatementDescription // describe mode
	prepared  map[string]struct{}                     // prepare mode: SQL texts prepared
}

const stateKey = "resty.ffi.postgres"

func stateOf(c *pgx.Conn) *connState {
	data := c.PgConn().CustomData()
	st, _ := data[stateKey].(*connState)
	if st == nil {
		st = &connState{described: map[string]*pgconn.StatementDescription{}, prepared: map[string]struct{}{}}
		data[stateKey] = st
	}
	return st
}

// statement returns the description of sql on this connection, preparing
// it the first time (named statement; in describe mode an unnamed one whose
// description is cached).
func (r *Runtime) statement(ctx context.Context, c *pgx.Conn, sql string) (*pgconn.StatementDescription, error) {
	st := stateOf(c)
	if r.set.describeOnly {
		if sd := st.described[sql]; sd != nil {
			return sd, nil
		}
		sd, err := c.Prepare(ctx, "", sql)
		if err != nil {
			return nil, err
		}
		if len(st.described) >= max(r.set.cacheCap, 1) {
			clear(st.described)
		}
		st.described[sql] = sd
		return sd, nil
	}
	// pgx keeps a statement prepared as (sql, sql) under a digest name and
	// answers later Prepare calls from its map without a round trip. The
	// cache is bounded: past capacity every statement is deallocated (rare:
	// applications use few distinct SQL texts).
	if _, ok := st.prepared[sql]; !ok {
		if r.set.cacheCap > 0 && len(st.prepared) >= r.set.cacheCap {
			if err := c.DeallocateAll(ctx); err != nil {
				return nil, err
			}
			clear(st.prepared)
		}
		st.prepared[sql] = struct{}{}
	}
	sd, err := c.Prepare(ctx, sql, sql)
	if err != nil {
		delete(st.prepared, sql)
		return nil, err
	}
	return sd, nil
}

// resultFormats: binary for the few types read in binary, text otherwise.
func resultFormats(fields []pgconn.FieldDescription) []int16 {
	f := make([]int16, len(fields))
	for i := range fields {
		f[i] = binaryResults[fields[i].DataTypeOID]
	}
	return f
}

// bind converts and encodes the parameters of a described statement.
func (r *Runtime) bind(c *pgx.Conn, sd *pgconn.StatementDescription, args []any) (*pgx.ExtendedQueryBuilder, error) {
	params, err := r.convertParams(sd.ParamOIDs, args)
	if err != nil {
		return nil, err
	}
	eqb := &pgx.ExtendedQueryBuilder{}
	if err := eqb.Build(c.TypeMap(), sd, params); err != nil {
		return nil, fmt.Errorf("postgres: encoding parameters: %w", err)
	}
	eqb.ResultFormats = resultFormats(sd.Fields)
	return eqb, nil
}

// query runs one statement (prepared once per connection) and encodes its
// result. A statement invalidated by a schema change is prepared again.
func (r *Runtime) query(ctx context.Context, c *pgx.Conn, sql string, args []any, keyed bool) (any, error) {
	out, err := r.queryOnce(ctx, c, sql, args, keyed)
	var pe *pgconn.PgError
	if err != nil && !r.set.describeOnly && errors.As(err, &pe) && pe.Code == "0A000" &&
		strings.Contains(pe.Message, "cached plan") && c.PgConn().TxStatus() == 'I' {
		_ = c.Deallocate(ctx, sql)
		delete(stateOf(c).prepared, sql)
		return r.queryOnce(ctx, c, sql, args, keyed)
	}
	return out, err
}

func (r *Runtime) queryOnce(ctx context.Context, c *pgx.Conn, sql string, args []any, keyed bool) (any, error) {
	sd, err := r.statement(ctx, c, sql)
	if err != nil {
		return nil, err
	}
	if err := r.learnTypes(ctx, c, sd.Fields); err != nil {
		return nil, err
	}
	eqb, err := r.bind(c, sd, args)
	if err != nil {
		return nil, err
	}
	var rr *pgconn.ResultReader
	if r.set.describeOnly {
		rr = c.PgConn().ExecParams(ctx, sql, eqb.ParamValues, sd.ParamOIDs, eqb.ParamFormats, eqb.ResultFormats)
	} else {
		rr = c.PgConn().ExecPrepared(ctx, sd.Name, eqb.ParamValues, eqb.ParamFormats, eqb.ResultFormats)
	}
	out := core.NewReply()
	if err := r.collect(rr, sd.Fields, keyed, &out.Encoder); err != nil {
		out.Release()
		return nil, err
	}
	return out, nil
}

// collect appends one result set to out; on error out is left as it was.
func (r *Runtime) collect(rr *pgconn.ResultReader, fields []pgconn.FieldDescription, keyed bool, out *core.Encoder) error {
	start := len(out.Buf)
	w := writerPool.Get().(*resultWriter)
	w.r, w.e, w.keyed = r, out, keyed
	defer func() {
		w.r, w.e = nil, nil
		writerPool.Put(w)
	}()
	if fields == nil || len(rr.FieldDescriptions()) > 0 {
		fields = rr.FieldDescriptions()
	}
	w.begin(fields)
	var rowErr error
	for rr.NextRow() {
		if rowErr == nil {
			rowErr = w.row(rr.Values())
		}
	}
	tag, err := rr.Close()
	if err == nil {
		err = rowErr
	}
	if err != nil {
		out.Buf = out.Buf[:start]
		return err
	}
	w.finish(tag)
	return nil
}

// simple runs sql with the simple protocol: several statements, all
// results in text format -> array of results.
func (r *Runtime) simple(ctx context.Context, c *pgx.Conn, sql string) (any, error) {
	mrr := c.PgConn().Exec(ctx, sql)
	out := core.NewReply()
	results := out.OpenArray()
	n := 0
	var firstErr error
	for mrr.NextResult() {
		if err := r.collect(mrr.ResultReader(), nil, true, &out.Encoder); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		n++
	}
	if err := mrr.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		out.Release()
		return nil, firstErr
	}
	out.SetArrayLen(results, n)
	return out, nil
}

// batch pipelines statements with SendBatch.
func (r *Runtime) batch(ctx context.Context, c *pgx.Conn, args []any) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("postgres: batch: a list of {sql, args...} expected")
	}
	list, ok := args[0].([]any)
	if !ok {
		if m, isMap := args[0].(map[string]any); isMap && len(m) == 0 {
			list = nil
		} else {
			return nil, fmt.Errorf("postgres: batch: a list of {sql, args...} expected, got %T", args[0])
		}
	}
	b := &pgconn.Batch{}
	fields := make([][]pgconn.FieldDescription, len(list))
	for i, it := range list {
		q, ok := it.([]any)
		if !ok || len(q) == 0 {
			return nil, fmt.Errorf("postgres: batch: item %d must be {sql, args...}", i+1)
		}
		sql, ok := q[0].(string)
		if !ok {
			return nil, fmt.Errorf("postgres: batch: item %d: sql must be a string", i+1)
		}
		sd, err := r.statement(ctx, c, sql)
		if err != nil {
			return nil, fmt.Errorf("postgres: batch: item %d: %w", i+1, err)
		}
		if err := r.learnTypes(ctx, c, sd.Fields); err != nil {
			return nil, err
		}
		eqb, err := r.bind(c, sd, q[1:])
		if err != nil {
			return nil, fmt.Errorf("postgres: batch: item %d: %w", i+1, err)
		}
		if r.set.describeOnly {
			b.ExecParams(sql, eqb.ParamValues, sd.ParamOIDs, eqb.ParamFormats, eqb.ResultFormats)
		} else {
			b.ExecPrepared(sd.Name, eqb.ParamValues, eqb.ParamFormats, eqb.ResultFormats)
		}
		fields[i] = sd.Fields
	}
	mrr := c.PgConn().ExecBatch(ctx, b)
	out := core.NewReply()
	out.ArrayHeader(len(list))
	var firstErr error
	for i := 0; mrr.NextResult(); i++ {
		if i >= len(list) {
			continue
		}
		if err := r.collect(mrr.ResultReader(), fields[i], true, &out.Encoder); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("item %d: %w", i+1, err)
		}
	}
	if err := mrr.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		out.Release()
		return nil, firstErr
	}
	return out, nil
}

// quoteTable quotes "schema.table" or "table".
func quoteTable(t string) string {
	return pgx.Identifier(strings.Split(t, ".")).Sanitize()
}
