package reql

import (
	"context"
	"errors"
	"fmt"

	p "gopkg.in/rethinkdb/rethinkdb-go.v6/ql2"
)

// Result is what a START query evaluates to: an atom, or a Stream for
// sequences (table scans, streams) and changefeeds.
type Result struct {
	Atom   any
	Stream Stream
	// AtomFeed marks a point changefeed (get().changes()): the driver sends
	// the ATOM_FEED note instead of SEQUENCE_FEED.
	AtomFeed bool
}

// Run evaluates one query against b. term is the query's term tree and
// optargs its global optargs, both as encoding/json decodes them; the "db"
// optarg (a DB term) sets the default database, the others are ignored.
// Every error is an *Error carrying the response and error type to send.
func Run(ctx context.Context, b Backend, term any, optargs map[string]any) (Result, error) {
	t, err := ParseTerm(term)
	if err != nil {
		return Result{}, err
	}
	e := &evaluator{b: b, defaultDB: "test"}
	if raw, ok := optargs["db"]; ok {
		dt, err := ParseTerm(raw)
		if err != nil {
			return Result{}, err
		}
		v, err := e.eval(ctx, dt, nil)
		if err != nil {
			return Result{}, wrapErr(err)
		}
		db, ok := v.(*dbVal)
		if !ok {
			return Result{}, QueryLogic("Expected type DATABASE but found %s.", typeName(v))
		}
		e.defaultDB = db.name
	}
	v, err := e.eval(ctx, t, nil)
	if err != nil {
		return Result{}, wrapErr(err)
	}
	res, err := e.result(ctx, v)
	return res, wrapErr(err)
}

// wrapErr makes sure every error leaving the package is an *Error: backend
// failures that are not already query errors become OP_FAILED.
func wrapErr(err error) error {
	if err == nil {
		return nil
	}
	var re *Error
	if errors.As(err, &re) {
		return re
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Kind: RuntimeError, Type: ErrOpIndeterminate, Msg: "Query interrupted: " + err.Error()}
	}
	return OpFailed("%s", err.Error())
}

func (e *evaluator) result(ctx context.Context, v any) (Result, error) {
	switch v := v.(type) {
	case *singleVal:
		return Result{Atom: v.row}, nil
	case *seqVal:
		if v.array {
			return Result{Atom: v.items}, nil
		}
		return Result{Stream: &sliceStream{items: v.items}}, nil
	case *tableVal:
		rows, err := e.scan(ctx, v.t)
		if err != nil {
			return Result{}, err
		}
		return Result{Stream: &sliceStream{items: rows}}, nil
	case *feedVal:
		return Result{Stream: v.s, AtomFeed: v.atom}, nil
	case *dbVal, *funcVal, *orderVal:
		return Result{}, QueryLogic("Query result must be of type DATUM, GROUPED_DATA, or STREAM (got %s).", typeName(v))
	}
	return Result{Atom: v}, nil
}

// Values the evaluator passes around besides datums.
type (
	dbVal    struct{ name string }
	tableVal struct{ t Table }
	// seqVal is a finite sequence. With t set it is a selection of rows of
	// t, so writes can follow; array distinguishes ARRAY from STREAM.
	seqVal struct {
		items []any
		t     Table
		array bool
	}
	// singleVal is one row selected by get or nth (SELECTION<OBJECT>).
	singleVal struct {
		t   Table
		key any
		row any
	}
	feedVal struct {
		s    Stream
		atom bool
	}
	funcVal struct {
		params []float64
		body   *Term
		env    *env
	}
	orderVal struct {
		key  any // field name or *funcVal
		desc bool
	}
)

func typeName(v any) string {
	switch v := v.(type) {
	case *dbVal:
		return "DATABASE"
	case *tableVal:
		return "TABLE"
	case *seqVal:
		switch {
		case v.t != nil && v.array:
			return "SELECTION<ARRAY>"
		case v.t != nil:
			return "SELECTION<STREAM>"
		case v.array:
			return "ARRAY"
		}
		return "STREAM"
	case *singleVal:
		return "SELECTION<OBJECT>"
	case *feedVal:
		return "STREAM"
	case *funcVal:
		return "FUNCTION"
	case *orderVal:
		return "ORDERING"
	}
	return datumType(v)
}

// env binds the variables of enclosing functions.
type env struct {
	parent   *env
	vars     map[float64]any
	implicit any
	hasImpl  bool
}

func (n *env) lookup(id float64) (any, bool) {
	for ; n != nil; n = n.parent {
		if v, ok := n.vars[id]; ok {
			return v, true
		}
	}
	return nil, false
}

func (n *env) implicitVar() (any, bool) {
	for ; n != nil; n = n.parent {
		if n.hasImpl {
			return n.implicit, true
		}
	}
	return nil, false
}

type evaluator struct {
	b         Backend
	defaultDB string
}

// eval evaluates t in env. Terms are dispatched by type; each handler
// evaluates its own arguments so that control terms (branch, and, or,
// default, funcs) can stay lazy.
func (e *evaluator) eval(ctx context.Context, t *Term, n *env) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if t.Type == 0 {
		return t.Datum, nil
	}
	h, ok := handlers[t.Type]
	if !ok {
		return nil, unsupported(t.Type)
	}
	t, err := e.spliceArgs(ctx, t, n)
	if err != nil {
		return nil, err
	}
	return h(e, ctx, t, n)
}

// spliceArgs expands r.args(array) arguments into the argument list.
func (e *evaluator) spliceArgs(ctx context.Context, t *Term, n *env) (*Term, error) {
	has := false
	for _, a := range t.Args {
		has = has || a.Type == p.Term_ARGS
	}
	if !has {
		return t, nil
	}
	out := &Term{Type: t.Type, Opts: t.Opts}
	for _, a := range t.Args {
		if a.Type != p.Term_ARGS {
			out.Args = append(out.Args, a)
			continue
		}
		if len(a.Args) != 1 {
			return nil, compileErr("Expected 1 argument but found %d.", len(a.Args))
		}
		v, err := e.eval(ctx, a.Args[0], n)
		if err != nil {
			return nil, err
		}
		if v, err = e.asDatum(ctx, v); err != nil {
			return nil, err
		}
		arr, ok := v.([]any)
		if !ok {
			return nil, typeErr("ARRAY", v)
		}
		for _, x := range arr {
			out.Args = append(out.Args, &Term{Datum: x})
		}
	}
	return out, nil
}

type handler func(e *evaluator, ctx context.Context, t *Term, n *env) (any, error)

// handlers is filled in init functions of the files that implement them.
var handlers = map[p.Term_TermType]handler{}

func register(tt p.Term_TermType, h handler) { handlers[tt] = h }

// argc checks the number of arguments.
func argc(t *Term, min, max int) error {
	n := len(t.Args)
	if n >= min && (max < 0 || n <= max) {
		return nil
	}
	want := fmt.Sprintf("%d", min)
	switch {
	case max < 0:
		want = fmt.Sprintf("%d or more", min)
	case max != min:
		want = fmt.Sprintf("between %d and %d", min, max)
	}
	plural := "s"
	if min == 1 && max == 1 {
		plural = ""
	}
	return compileErr("Expected %s argument%s but found %d.", want, plural, n)
}

// arg evaluates argument i.
func (e *evaluator) arg(ctx context.Context, t *Term, i int, n *env) (any, error) {
	return e.eval(ctx, t.Args[i], n)
}

// datumArg evaluates argument i and requires a datum.
func (e *evaluator) datumArg(ctx context.Context, t *Term, i int, n *env) (any, error) {
	v, err := e.eval(ctx, t.Args[i], n)
	if err != nil {
		return nil, err
	}
	return e.asDatum(ctx, v)
}

// funcOrDatumArg evaluates argument i and requires a function or a datum
// (filter predicates, merge and update arguments: a literal or a function
// of the row).
func (e *evaluator) funcOrDatumArg(ctx context.Context, t *Term, i int, n *env) (any, error) {
	v, err := e.eval(ctx, t.Args[i], n)
	if err != nil {
		return nil, err
	}
	return e.asFuncOrDatum(ctx, v)
}

// argsFrom evaluates the arguments from index first on with get (e.arg,
// e.datumArg, ...), for terms that take any number of them.
func (e *evaluator) argsFrom(ctx context.Context, t *Term, first int, n *env, get func(context.Context, *Term, int, *env) (any, error)) ([]any, error) {
	out := make([]any, 0, max(len(t.Args)-first, 0))
	for i := first; i < len(t.Args); i++ {
		v, err := get(ctx, t, i, n)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (e *evaluator) optDatum(ctx context.Context, t *Term, name string, n *env) (any, bool, error) {
	ot, ok := t.Opts[name]
	if !ok {
		return nil, false, nil
	}
	v, err := e.eval(ctx, ot, n)
	if err != nil {
		return nil, false, err
	}
	v, err = e.asDatum(ctx, v)
	return v, true, err
}

func (e *evaluator) asDatum(ctx context.Context, v any) (any, error) {
	switch v := v.(type) {
	case *singleVal:
		return v.row, nil
	case *seqVal:
		return v.items, nil
	case *tableVal:
		rows, err := e.scan(ctx, v.t)
		if err != nil {
			return nil, err
		}
		return rows, nil
	case *dbVal, *funcVal, *feedVal, *orderVal:
		return nil, QueryLogic("Expected type DATUM but found %s.", typeName(v))
	}
	return v, nil
}

func (e *evaluator) stringArg(ctx context.Context, t *Term, i int, n *env) (string, error) {
	v, err := e.datumArg(ctx, t, i, n)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", typeErr("STRING", v)
	}
	return s, nil
}

func (e *evaluator) numberArg(ctx context.Context, t *Term, i int, n *env) (float64, error) {
	v, err := e.datumArg(ctx, t, i, n)
	if err != nil {
		return 0, err
	}
	f, ok := v.(float64)
	if !ok {
		return 0, typeErr("NUMBER", v)
	}
	return f, nil
}

func (e *evaluator) intArg(ctx context.Context, t *Term, i int, n *env) (int, error) {
	f, err := e.numberArg(ctx, t, i, n)
	if err != nil {
		return 0, err
	}
	if f != float64(int(f)) {
		return 0, QueryLogic("Number not an integer: %s", formatNumber(f))
	}
	return int(f), nil
}

func typeErr(want string, got any) *Error {
	return QueryLogic("Expected type %s but found %s.", want, typeName(got))
}

// call applies a function value to args; a non-function value is a
// constant function, as the server allows.
func (e *evaluator) call(ctx context.Context, fn any, args ...any) (any, error) {
	f, ok := fn.(*funcVal)
	if !ok {
		return fn, nil
	}
	if len(f.params) != len(args) {
		return nil, QueryLogic("Expected function with %d argument%s but found function with %d argument%s.",
			len(args), plural(len(args)), len(f.params), plural(len(f.params)))
	}
	child := &env{parent: f.env, vars: make(map[float64]any, len(args))}
	for i, id := range f.params {
		child.vars[id] = args[i]
	}
	if len(args) == 1 {
		child.implicit, child.hasImpl = args[0], true
	}
	v, err := e.eval(ctx, f.body, child)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// callDatum calls fn and requires a datum result.
func (e *evaluator) callDatum(ctx context.Context, fn any, args ...any) (any, error) {
	v, err := e.call(ctx, fn, args...)
	if err != nil {
		return nil, err
	}
	return e.asDatum(ctx, v)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// seq converts a value to a finite sequence.
func (e *evaluator) seq(ctx context.Context, v any) (*seqVal, error) {
	switch v := v.(type) {
	case *seqVal:
		return v, nil
	case *tableVal:
		rows, err := e.scan(ctx, v.t)
		if err != nil {
			return nil, err
		}
		return &seqVal{items: rows, t: v.t}, nil
	case []any:
		return &seqVal{items: v, array: true}, nil
	case *feedVal:
		return nil, QueryLogic("Cannot call a terminal (`reduce`, `count`, etc.) on an infinite stream (such as a changefeed).")
	case *singleVal:
		return nil, QueryLogic("Expected type SEQUENCE but found SINGLE_SELECTION.")
	}
	return nil, QueryLogic("Cannot convert %s to SEQUENCE", typeName(v))
}

func (e *evaluator) seqArg(ctx context.Context, t *Term, i int, n *env) (*seqVal, error) {
	v, err := e.arg(ctx, t, i, n)
	if err != nil {
		return nil, err
	}
	return e.seq(ctx, v)
}

func (e *evaluator) scan(ctx context.Context, t Table) ([]any, error) {
	rows, err := t.Scan(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(rows))
	for i, r := range rows {
		out[i] = normalize(r)
	}
	return out, nil
}

// derive builds the result of a sequence operation on s: selections stay
// selections only when keep is true (the rows are still table rows).
func derive(s *seqVal, items []any, keep bool) *seqVal {
	out := &seqVal{items: items, array: s.array}
	if keep {
		out.t = s.t
	}
	return out
}

func isNonExistence(err error) bool {
	var re *Error
	return errors.As(err, &re) && re.Kind == RuntimeError && re.Type == ErrNonExistence
}

// AsError converts any error to the *Error a client should receive: query
// errors pass through, others become OP_FAILED (or OP_INDETERMINATE for an
// interrupted context).
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	return wrapErr(err).(*Error)
}
