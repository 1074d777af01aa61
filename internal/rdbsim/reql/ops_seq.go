package reql

import (
	"context"
	"math"
	"sort"

	p "gopkg.in/rethinkdb/rethinkdb-go.v6/ql2"
)

func init() {
	register(p.Term_DB, evalDB)
	register(p.Term_TABLE, evalTable)
	register(p.Term_GET, evalGet)
	register(p.Term_GET_ALL, evalGetAll)
	register(p.Term_FILTER, evalFilter)
	register(p.Term_MAP, evalMap)
	register(p.Term_CONCAT_MAP, evalConcatMap)
	register(p.Term_COUNT, evalCount)
	register(p.Term_PLUCK, fieldsOp(pluck))
	register(p.Term_WITHOUT, fieldsOp(without))
	register(p.Term_NTH, evalNth)
	register(p.Term_BRACKET, evalBracket)
	register(p.Term_GET_FIELD, evalGetField)
	register(p.Term_HAS_FIELDS, evalHasFields)
	register(p.Term_KEYS, evalKeys)
	register(p.Term_VALUES, evalValues)
	register(p.Term_CONTAINS, evalContains)
	register(p.Term_LIMIT, evalLimit)
	register(p.Term_SKIP, evalSkip)
	register(p.Term_SLICE, evalSlice)
	register(p.Term_ORDER_BY, evalOrderBy)
	register(p.Term_DISTINCT, evalDistinct)
	register(p.Term_MERGE, evalMerge)
	register(p.Term_APPEND, evalAppend(false))
	register(p.Term_PREPEND, evalAppend(true))
	register(p.Term_IS_EMPTY, evalIsEmpty)
	register(p.Term_UNION, evalUnion)
	register(p.Term_SUM, evalSum)
	register(p.Term_AVG, evalAvg)
	register(p.Term_MIN, evalMinMax(-1))
	register(p.Term_MAX, evalMinMax(1))
	register(p.Term_RANGE, evalRange)
	register(p.Term_CONFIG, evalConfig)
}

// evalConfig is db.config() and table.config(): the row of db_config or
// table_config, as a single selection that can be updated.
func evalConfig(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	var sys string
	var match func(row map[string]any) bool
	switch v := v.(type) {
	case *dbVal:
		// Resolve through TableList so that missing and ambiguous names get
		// the backend's errors.
		if _, err := e.b.TableList(ctx, v.name); err != nil {
			return nil, err
		}
		sys = "db_config"
		match = func(row map[string]any) bool { return row["name"] == v.name }
	case *tableVal:
		sys = "table_config"
		db, name := v.t.DB(), v.t.Name()
		match = func(row map[string]any) bool { return row["db"] == db && row["name"] == name }
	default:
		return nil, QueryLogic("Expected type DATABASE or TABLE but found %s.", typeName(v))
	}
	cfg, err := e.b.Table(ctx, "rethinkdb", sys, TableOpts{})
	if err != nil {
		return nil, err
	}
	rows, err := e.scan(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		if m, ok := r.(map[string]any); ok && match(m) {
			return &singleVal{t: cfg, key: m["id"], row: m}, nil
		}
	}
	return nil, OpFailed("rethinkdb-sim: no %s row found for config()", sys)
}

func evalDB(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	name, err := e.stringArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	return &dbVal{name: name}, nil
}

// dbAndName reads the (db, name) or (name) arguments of table terms.
func (e *evaluator) dbAndName(ctx context.Context, t *Term, n *env) (db, name string, err error) {
	if err := argc(t, 1, 2); err != nil {
		return "", "", err
	}
	db, i := e.defaultDB, 0
	if len(t.Args) == 2 {
		v, err := e.arg(ctx, t, 0, n)
		if err != nil {
			return "", "", err
		}
		d, ok := v.(*dbVal)
		if !ok {
			return "", "", typeErr("DATABASE", v)
		}
		db, i = d.name, 1
	}
	name, err = e.stringArg(ctx, t, i, n)
	return db, name, err
}

func evalTable(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	db, name, err := e.dbAndName(ctx, t, n)
	if err != nil {
		return nil, err
	}
	var opts TableOpts
	if v, ok, err := e.optDatum(ctx, t, "identifier_format", n); err != nil {
		return nil, err
	} else if ok {
		s, isStr := v.(string)
		if !isStr || (s != "name" && s != "uuid") {
			return nil, QueryLogic("Identifier format `%s` unrecognized (options are \"name\" and \"uuid\").", printDatum(v))
		}
		opts.IdentifierFormat = s
	}
	tbl, err := e.b.Table(ctx, db, name, opts)
	if err != nil {
		return nil, err
	}
	return &tableVal{t: tbl}, nil
}

func (e *evaluator) tableArg(ctx context.Context, t *Term, n *env) (Table, error) {
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	tv, ok := v.(*tableVal)
	if !ok {
		return nil, typeErr("TABLE", v)
	}
	return tv.t, nil
}

func checkKey(k any) error {
	switch k.(type) {
	case float64, string, bool, []any:
		return nil
	case map[string]any:
		if datumType(k) != "OBJECT" {
			return nil
		}
	}
	return QueryLogic("Primary keys must be either a number, string, bool, pseudotype or array (got type %s):\n%s", datumType(k), printDatum(k))
}

func (e *evaluator) get(ctx context.Context, tbl Table, key any) (any, error) {
	row, err := tbl.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return normalize(row), nil
}

func evalGet(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	tbl, err := e.tableArg(ctx, t, n)
	if err != nil {
		return nil, err
	}
	key, err := e.datumArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	row, err := e.get(ctx, tbl, key)
	if err != nil {
		return nil, err
	}
	return &singleVal{t: tbl, key: key, row: row}, nil
}

func evalGetAll(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, -1); err != nil {
		return nil, err
	}
	tbl, err := e.tableArg(ctx, t, n)
	if err != nil {
		return nil, err
	}
	if v, ok, err := e.optDatum(ctx, t, "index", n); err != nil {
		return nil, err
	} else if ok && v != tbl.PrimaryKey() {
		return nil, QueryLogic("rethinkdb-sim: getAll on secondary index %s is not supported", printDatum(v))
	}
	out := &seqVal{t: tbl}
	for i := 1; i < len(t.Args); i++ {
		key, err := e.datumArg(ctx, t, i, n)
		if err != nil {
			return nil, err
		}
		row, err := e.get(ctx, tbl, key)
		if err != nil {
			return nil, err
		}
		if row != nil {
			out.items = append(out.items, row)
		}
	}
	return out, nil
}

// getField reads one field of a datum for bracket and getField.
func getField(op string, v any, name string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		f, ok := v[name]
		if !ok {
			return nil, nonExistence("No attribute `%s` in object:\n%s", name, printDatum(v))
		}
		return f, nil
	case nil:
		return nil, nonExistence("Cannot perform %s on a non-object non-sequence `null`.", op)
	}
	return nil, QueryLogic("Cannot perform %s on a non-object non-sequence `%s`.", op, printDatum(v))
}

// fieldOfSeq maps getField over a sequence, skipping rows without the field.
func fieldOfSeq(op string, s *seqVal, name string) (any, error) {
	var out []any
	for _, it := range s.items {
		f, err := getField(op, it, name)
		if err != nil {
			if isNonExistence(err) {
				continue
			}
			return nil, err
		}
		out = append(out, f)
	}
	return derive(s, out, false), nil
}

func (e *evaluator) field(ctx context.Context, op string, v any, name string) (any, error) {
	switch v.(type) {
	case *seqVal, *tableVal, []any:
		s, err := e.seq(ctx, v)
		if err != nil {
			return nil, err
		}
		return fieldOfSeq(op, s, name)
	case *feedVal:
		return e.feedMap(v.(*feedVal), func(ctx context.Context, x any) (any, bool, error) {
			f, err := getField(op, x, name)
			if isNonExistence(err) {
				return nil, false, nil
			}
			return f, err == nil, err
		}), nil
	}
	d, err := e.asDatum(ctx, v)
	if err != nil {
		return nil, err
	}
	return getField(op, d, name)
}

func evalGetField(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	name, err := e.stringArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	return e.field(ctx, "get_field", v, name)
}

func evalBracket(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	k, err := e.datumArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case string:
		return e.field(ctx, "bracket", v, k)
	case float64:
		switch v.(type) {
		case *seqVal, *tableVal, []any:
			return e.nth(ctx, v, k)
		}
		d, err := e.asDatum(ctx, v)
		if err != nil {
			return nil, err
		}
		if d == nil {
			return nil, nonExistence("Cannot perform bracket on a non-object non-sequence `null`.")
		}
		if _, ok := d.(map[string]any); ok {
			return nil, QueryLogic("Expected type STRING but found NUMBER.")
		}
		return nil, QueryLogic("Cannot perform bracket on a non-object non-sequence `%s`.", printDatum(d))
	}
	return nil, QueryLogic("Expected NUMBER or STRING as second argument to `bracket` but found %s.", datumType(k))
}

func (e *evaluator) nth(ctx context.Context, v any, idx float64) (any, error) {
	s, err := e.seq(ctx, v)
	if err != nil {
		return nil, err
	}
	if idx != math.Trunc(idx) {
		return nil, QueryLogic("Number not an integer: %s", formatNumber(idx))
	}
	i := int(idx)
	if i < 0 {
		i += len(s.items)
	}
	if i < 0 || i >= len(s.items) {
		return nil, nonExistence("Index out of bounds: %d", int(idx))
	}
	row := s.items[i]
	if s.t != nil {
		if m, ok := row.(map[string]any); ok {
			return &singleVal{t: s.t, key: m[s.t.PrimaryKey()], row: row}, nil
		}
	}
	return row, nil
}

func evalNth(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	idx, err := e.numberArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	return e.nth(ctx, v, idx)
}

// predicate evaluates a filter predicate on x: a function, an object to
// match, or a constant. A non-existence error yields dflt (filter's default
// optarg, false unless set); a default that is r.error() raises.
func (e *evaluator) predicate(ctx context.Context, pred any, x any, dflt func() (any, error)) (bool, error) {
	var v any
	var err error
	switch pv := pred.(type) {
	case *funcVal:
		v, err = e.callDatum(ctx, pv, x)
	case map[string]any:
		return matchObject(pv, x), nil
	default:
		v = pred
	}
	if err != nil {
		if !isNonExistence(err) {
			return false, err
		}
		d, derr := dflt()
		if derr != nil {
			return false, derr
		}
		return truthy(d), nil
	}
	return truthy(v), nil
}

// matchObject is filter's object predicate: every field of pred is in x with
// an equal value (nested objects match the same way).
func matchObject(pred map[string]any, x any) bool {
	m, ok := x.(map[string]any)
	if !ok {
		return false
	}
	for k, want := range pred {
		got, ok := m[k]
		if !ok {
			return false
		}
		if wm, isObj := want.(map[string]any); isObj && datumType(wm) == "OBJECT" {
			if !matchObject(wm, got) {
				return false
			}
			continue
		}
		if !equalDatum(want, got) {
			return false
		}
	}
	return true
}

func (e *evaluator) filterDefault(ctx context.Context, t *Term, n *env) func() (any, error) {
	return func() (any, error) {
		dt, ok := t.Opts["default"]
		if !ok {
			return false, nil
		}
		v, err := e.eval(ctx, dt, n)
		if err != nil {
			return nil, err
		}
		return e.asDatum(ctx, v)
	}
}

func evalFilter(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	pred, err := e.funcOrDatumArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	dflt := e.filterDefault(ctx, t, n)
	if f, ok := v.(*feedVal); ok {
		return e.feedMap(f, func(ctx context.Context, x any) (any, bool, error) {
			keep, err := e.predicate(ctx, pred, x, e.filterDefault(ctx, t, n))
			return x, keep, err
		}), nil
	}
	s, err := e.seq(ctx, v)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, x := range s.items {
		keep, err := e.predicate(ctx, pred, x, dflt)
		if err != nil {
			return nil, err
		}
		if keep {
			out = append(out, x)
		}
	}
	return derive(s, out, true), nil
}

func (e *evaluator) asFuncOrDatum(ctx context.Context, v any) (any, error) {
	if _, ok := v.(*funcVal); ok {
		return v, nil
	}
	return e.asDatum(ctx, v)
}

func evalMap(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, -1); err != nil {
		return nil, err
	}
	if len(t.Args) > 2 {
		return nil, QueryLogic("rethinkdb-sim: map over several sequences is not supported")
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	fn, err := e.arg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	if f, ok := v.(*feedVal); ok {
		return e.feedMap(f, func(ctx context.Context, x any) (any, bool, error) {
			y, err := e.callDatum(ctx, fn, x)
			return y, err == nil, err
		}), nil
	}
	s, err := e.seq(ctx, v)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(s.items))
	for _, x := range s.items {
		y, err := e.callDatum(ctx, fn, x)
		if err != nil {
			return nil, err
		}
		out = append(out, y)
	}
	return derive(s, out, false), nil
}

func evalConcatMap(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	s, err := e.seqArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	fn, err := e.arg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, x := range s.items {
		y, err := e.call(ctx, fn, x)
		if err != nil {
			return nil, err
		}
		ys, err := e.seq(ctx, y)
		if err != nil {
			return nil, err
		}
		out = append(out, ys.items...)
	}
	return derive(s, out, false), nil
}

func evalCount(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 2); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	if d, ok := v.(string); ok && len(t.Args) == 1 {
		return float64(len([]rune(d))), nil
	}
	if d, ok := v.(map[string]any); ok && len(t.Args) == 1 {
		return float64(len(d)), nil
	}
	s, err := e.seq(ctx, v)
	if err != nil {
		return nil, err
	}
	if len(t.Args) == 1 {
		return float64(len(s.items)), nil
	}
	pred, err := e.arg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	c := 0
	for _, x := range s.items {
		var match bool
		if _, isFunc := pred.(*funcVal); isFunc {
			y, err := e.callDatum(ctx, pred, x)
			if err != nil {
				return nil, err
			}
			match = truthy(y)
		} else {
			d, err := e.asDatum(ctx, pred)
			if err != nil {
				return nil, err
			}
			match = equalDatum(d, x)
		}
		if match {
			c++
		}
	}
	return float64(c), nil
}

// fieldsOp applies pluck or without to an object or to each row of a
// sequence.
func fieldsOp(f func(obj map[string]any, sels []any) map[string]any) handler {
	return func(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
		if err := argc(t, 1, -1); err != nil {
			return nil, err
		}
		v, err := e.arg(ctx, t, 0, n)
		if err != nil {
			return nil, err
		}
		sels, err := e.argsFrom(ctx, t, 1, n, e.datumArg)
		if err != nil {
			return nil, err
		}
		apply := func(x any) (any, error) {
			m, ok := x.(map[string]any)
			if !ok {
				return nil, QueryLogic("Cannot perform %s on a non-object non-sequence `%s`.", lowerName(t.Type), printDatum(x))
			}
			return f(m, sels), nil
		}
		switch v.(type) {
		case *seqVal, *tableVal, []any:
			s, err := e.seq(ctx, v)
			if err != nil {
				return nil, err
			}
			out := make([]any, 0, len(s.items))
			for _, x := range s.items {
				y, err := apply(x)
				if err != nil {
					return nil, err
				}
				out = append(out, y)
			}
			return derive(s, out, false), nil
		case *feedVal:
			return e.feedMap(v.(*feedVal), func(ctx context.Context, x any) (any, bool, error) {
				y, err := apply(x)
				return y, err == nil, err
			}), nil
		}
		d, err := e.asDatum(ctx, v)
		if err != nil {
			return nil, err
		}
		return apply(d)
	}
}

func lowerName(tt p.Term_TermType) string {
	b := []byte(termName(tt))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func pluck(obj map[string]any, sels []any) map[string]any {
	out := map[string]any{}
	for _, sel := range sels {
		switch s := sel.(type) {
		case string:
			if v, ok := obj[s]; ok {
				out[s] = v
			}
		case []any:
			for k, v := range pluck(obj, s) {
				out[k] = v
			}
		case map[string]any:
			for k, sub := range s {
				v, ok := obj[k]
				if !ok {
					continue
				}
				if sub == true {
					out[k] = v
					continue
				}
				if vm, isObj := v.(map[string]any); isObj {
					out[k] = pluck(vm, []any{sub})
				}
			}
		}
	}
	return out
}

func without(obj map[string]any, sels []any) map[string]any {
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		out[k] = v
	}
	for _, sel := range sels {
		switch s := sel.(type) {
		case string:
			delete(out, s)
		case []any:
			out = without(out, s)
		case map[string]any:
			for k, sub := range s {
				if sub == true {
					delete(out, k)
				} else if vm, isObj := out[k].(map[string]any); isObj {
					out[k] = without(vm, []any{sub})
				}
			}
		}
	}
	return out
}

func evalHasFields(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, -1); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	var fields []string
	for i := 1; i < len(t.Args); i++ {
		f, err := e.datumArg(ctx, t, i, n)
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case string:
			fields = append(fields, f)
		case []any:
			for _, x := range f {
				s, ok := x.(string)
				if !ok {
					return nil, QueryLogic("rethinkdb-sim: hasFields with nested selectors is not supported")
				}
				fields = append(fields, s)
			}
		default:
			return nil, QueryLogic("rethinkdb-sim: hasFields with nested selectors is not supported")
		}
	}
	has := func(x any) bool {
		m, ok := x.(map[string]any)
		if !ok {
			return false
		}
		for _, f := range fields {
			if v, ok := m[f]; !ok || v == nil {
				return false
			}
		}
		return true
	}
	switch v.(type) {
	case *seqVal, *tableVal, []any:
		s, err := e.seq(ctx, v)
		if err != nil {
			return nil, err
		}
		out := []any{}
		for _, x := range s.items {
			if has(x) {
				out = append(out, x)
			}
		}
		return derive(s, out, true), nil
	}
	d, err := e.asDatum(ctx, v)
	if err != nil {
		return nil, err
	}
	if _, ok := d.(map[string]any); !ok {
		return nil, QueryLogic("Cannot perform has_fields on a non-object non-sequence `%s`.", printDatum(d))
	}
	return has(d), nil
}

func (e *evaluator) objectArg(ctx context.Context, t *Term, i int, n *env) (map[string]any, error) {
	v, err := e.datumArg(ctx, t, i, n)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, typeErr("OBJECT", v)
	}
	return m, nil
}

func evalKeys(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	m, err := e.objectArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, k := range sortedKeys(m) {
		out = append(out, k)
	}
	return out, nil
}

func evalValues(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	m, err := e.objectArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out, nil
}

func evalContains(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, -1); err != nil {
		return nil, err
	}
	s, err := e.seqArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	for i := 1; i < len(t.Args); i++ {
		want, err := e.funcOrDatumArg(ctx, t, i, n)
		if err != nil {
			return nil, err
		}
		found := false
		for _, x := range s.items {
			if _, isFunc := want.(*funcVal); isFunc {
				y, err := e.callDatum(ctx, want, x)
				if err != nil {
					return nil, err
				}
				found = truthy(y)
			} else {
				found = equalDatum(want, x)
			}
			if found {
				break
			}
		}
		if !found {
			return false, nil
		}
	}
	return true, nil
}

func evalLimit(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	k, err := e.intArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	if k < 0 {
		return nil, QueryLogic("LIMIT takes a non-negative argument (got %d)", k)
	}
	if f, ok := v.(*feedVal); ok {
		return &feedVal{s: &limitStream{src: f.s, left: k}, atom: f.atom}, nil
	}
	s, err := e.seq(ctx, v)
	if err != nil {
		return nil, err
	}
	if k > len(s.items) {
		k = len(s.items)
	}
	return derive(s, s.items[:k], true), nil
}

func evalSkip(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	s, err := e.seqArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	k, err := e.intArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	if k < 0 {
		return nil, QueryLogic("Cannot use a negative left index on a stream.")
	}
	if k > len(s.items) {
		k = len(s.items)
	}
	return derive(s, s.items[k:], true), nil
}

func evalSlice(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 3); err != nil {
		return nil, err
	}
	s, err := e.seqArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	if len(t.Opts) > 0 {
		return nil, QueryLogic("rethinkdb-sim: slice bounds options are not supported")
	}
	l := len(s.items)
	start, err := e.intArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	end := l
	if len(t.Args) == 3 {
		if end, err = e.intArg(ctx, t, 2, n); err != nil {
			return nil, err
		}
	}
	if start < 0 {
		start += l
	}
	if end < 0 {
		end += l
	}
	start = max(0, min(start, l))
	end = max(start, min(end, l))
	return derive(s, s.items[start:end], true), nil
}

func evalOrderBy(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, -1); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	var keys []*orderVal
	if it, ok := t.Opts["index"]; ok {
		iv, err := e.eval(ctx, it, n)
		if err != nil {
			return nil, err
		}
		o, ok := iv.(*orderVal)
		if !ok {
			o = &orderVal{key: iv}
		}
		tv, isTable := v.(*tableVal)
		if !isTable || o.key != tv.t.PrimaryKey() {
			return nil, QueryLogic("rethinkdb-sim: orderBy on secondary index %s is not supported", printDatum(o.key))
		}
		keys = append(keys, o)
	}
	for i := 1; i < len(t.Args); i++ {
		kv, err := e.arg(ctx, t, i, n)
		if err != nil {
			return nil, err
		}
		o, ok := kv.(*orderVal)
		if !ok {
			o = &orderVal{key: kv}
		}
		keys = append(keys, o)
	}
	s, err := e.seq(ctx, v)
	if err != nil {
		return nil, err
	}
	type keyed struct {
		row  any
		keys []any
	}
	rows := make([]keyed, len(s.items))
	for i, x := range s.items {
		rows[i].row = x
		for _, o := range keys {
			var k any
			switch kf := o.key.(type) {
			case string:
				k, err = getField("order_by", x, kf)
				if isNonExistence(err) {
					k, err = nil, nil
				}
			case *funcVal:
				k, err = e.callDatum(ctx, kf, x)
			default:
				return nil, QueryLogic("Expected type STRING or FUNCTION but found %s.", typeName(kf))
			}
			if err != nil {
				return nil, err
			}
			rows[i].keys = append(rows[i].keys, k)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		for k, o := range keys {
			c := compareDatum(rows[i].keys[k], rows[j].keys[k])
			if c == 0 {
				continue
			}
			if o.desc {
				return c > 0
			}
			return c < 0
		}
		return false
	})
	out := make([]any, len(rows))
	for i, r := range rows {
		out[i] = r.row
	}
	res := derive(s, out, true)
	res.array = !isTable(v) || len(t.Opts) == 0
	return res, nil
}

func evalDistinct(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	s, err := e.seqArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	items := append([]any{}, s.items...)
	sortDatums(items)
	out := []any{}
	for i, x := range items {
		if i == 0 || !equalDatum(items[i-1], x) {
			out = append(out, x)
		}
	}
	return &seqVal{items: out, array: true}, nil
}

// mergeObjects merges b into a recursively, as ReQL merge and update do.
func mergeObjects(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		bm, bIsObj := v.(map[string]any)
		am, aIsObj := out[k].(map[string]any)
		if bIsObj && aIsObj && datumType(bm) == "OBJECT" && datumType(am) == "OBJECT" {
			out[k] = mergeObjects(am, bm)
			continue
		}
		out[k] = v
	}
	return out
}

func evalMerge(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, -1); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	others, err := e.argsFrom(ctx, t, 1, n, e.funcOrDatumArg)
	if err != nil {
		return nil, err
	}
	apply := func(ctx context.Context, x any) (any, error) {
		acc, ok := x.(map[string]any)
		if !ok {
			return nil, typeErr("OBJECT", x)
		}
		for _, o := range others {
			ov, err := e.callDatum(ctx, o, x)
			if err != nil {
				return nil, err
			}
			om, ok := ov.(map[string]any)
			if !ok {
				return nil, typeErr("OBJECT", ov)
			}
			acc = mergeObjects(acc, om)
		}
		return acc, nil
	}
	switch v.(type) {
	case *seqVal, *tableVal, []any:
		s, err := e.seq(ctx, v)
		if err != nil {
			return nil, err
		}
		out := make([]any, 0, len(s.items))
		for _, x := range s.items {
			y, err := apply(ctx, x)
			if err != nil {
				return nil, err
			}
			out = append(out, y)
		}
		return derive(s, out, false), nil
	case *feedVal:
		return e.feedMap(v.(*feedVal), func(ctx context.Context, x any) (any, bool, error) {
			y, err := apply(ctx, x)
			return y, err == nil, err
		}), nil
	}
	d, err := e.asDatum(ctx, v)
	if err != nil {
		return nil, err
	}
	return apply(ctx, d)
}

func evalAppend(prepend bool) handler {
	return func(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
		if err := argc(t, 2, 2); err != nil {
			return nil, err
		}
		a, err := e.datumArg(ctx, t, 0, n)
		if err != nil {
			return nil, err
		}
		arr, ok := a.([]any)
		if !ok {
			return nil, typeErr("ARRAY", a)
		}
		x, err := e.datumArg(ctx, t, 1, n)
		if err != nil {
			return nil, err
		}
		if prepend {
			return append([]any{x}, arr...), nil
		}
		return append(append([]any{}, arr...), x), nil
	}
}

func evalIsEmpty(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	s, err := e.seqArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	return len(s.items) == 0, nil
}

func evalUnion(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	out := &seqVal{array: true}
	for i := range t.Args {
		s, err := e.seqArg(ctx, t, i, n)
		if err != nil {
			return nil, err
		}
		out.items = append(out.items, s.items...)
		out.array = out.array && s.array
	}
	if len(t.Opts) > 0 {
		return nil, QueryLogic("rethinkdb-sim: union options are not supported")
	}
	return out, nil
}

// projected maps a sequence through an optional field name or function,
// skipping rows without the field, for sum/avg/min/max.
func (e *evaluator) projected(ctx context.Context, t *Term, n *env) (*seqVal, []any, error) {
	if err := argc(t, 1, 2); err != nil {
		return nil, nil, err
	}
	s, err := e.seqArg(ctx, t, 0, n)
	if err != nil {
		return nil, nil, err
	}
	if len(t.Args) == 1 {
		return s, s.items, nil
	}
	f, err := e.arg(ctx, t, 1, n)
	if err != nil {
		return nil, nil, err
	}
	out := make([]any, 0, len(s.items))
	for _, x := range s.items {
		var y any
		if name, ok := f.(string); ok {
			y, err = getField("bracket", x, name)
		} else {
			y, err = e.callDatum(ctx, f, x)
		}
		if isNonExistence(err) {
			out = append(out, skipMarker{})
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		out = append(out, y)
	}
	return s, out, nil
}

type skipMarker struct{}

func evalSum(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	_, vals, err := e.projected(ctx, t, n)
	if err != nil {
		return nil, err
	}
	sum := 0.0
	for _, v := range vals {
		if _, skip := v.(skipMarker); skip {
			continue
		}
		f, ok := v.(float64)
		if !ok {
			return nil, typeErr("NUMBER", v)
		}
		sum += f
	}
	return sum, nil
}

func evalAvg(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	_, vals, err := e.projected(ctx, t, n)
	if err != nil {
		return nil, err
	}
	sum, c := 0.0, 0
	for _, v := range vals {
		if _, skip := v.(skipMarker); skip {
			continue
		}
		f, ok := v.(float64)
		if !ok {
			return nil, typeErr("NUMBER", v)
		}
		sum += f
		c++
	}
	if c == 0 {
		return nil, nonExistence("Cannot take the average of an empty stream.  (If you passed `avg` a field name, it may be that no elements of the stream had that field.)")
	}
	return sum / float64(c), nil
}

func evalMinMax(sign int) handler {
	name := "min"
	if sign > 0 {
		name = "max"
	}
	return func(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
		if _, ok := t.Opts["index"]; ok {
			return nil, QueryLogic("rethinkdb-sim: %s on an index is not supported", name)
		}
		s, vals, err := e.projected(ctx, t, n)
		if err != nil {
			return nil, err
		}
		best := -1
		for i, v := range vals {
			if _, skip := v.(skipMarker); skip {
				continue
			}
			if best < 0 || compareDatum(v, vals[best])*sign > 0 {
				best = i
			}
		}
		if best < 0 {
			return nil, nonExistence("Cannot take the %s of an empty stream.  (If you passed `%s` a field name, it may be that no elements of the stream had that field.)", name, name)
		}
		return s.items[best], nil
	}
}

func evalRange(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 2); err != nil {
		return nil, err
	}
	lo, hi := 0, 0
	var err error
	if len(t.Args) == 1 {
		hi, err = e.intArg(ctx, t, 0, n)
	} else if lo, err = e.intArg(ctx, t, 0, n); err == nil {
		hi, err = e.intArg(ctx, t, 1, n)
	}
	if err != nil {
		return nil, err
	}
	if hi-lo > 100000 {
		return nil, QueryLogic("rethinkdb-sim: range larger than 100000 is not supported")
	}
	out := []any{}
	for i := lo; i < hi; i++ {
		out = append(out, float64(i))
	}
	return &seqVal{items: out}, nil
}
