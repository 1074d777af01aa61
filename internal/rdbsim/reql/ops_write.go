package reql

import (
	"context"
	"sort"

	p "gopkg.in/rethinkdb/rethinkdb-go.v6/ql2"
)

func init() {
	register(p.Term_INSERT, evalInsert)
	register(p.Term_UPDATE, evalUpdate)
	register(p.Term_REPLACE, evalReplace)
	register(p.Term_DELETE, evalDelete)
	register(p.Term_FOR_EACH, evalForEach)
	register(p.Term_DB_CREATE, evalDBCreate)
	register(p.Term_DB_DROP, evalDBDrop)
	register(p.Term_DB_LIST, evalDBList)
	register(p.Term_TABLE_CREATE, evalTableCreate)
	register(p.Term_TABLE_DROP, evalTableDrop)
	register(p.Term_TABLE_LIST, evalTableList)
}

func addSummary(a *WriteSummary, b WriteSummary) {
	a.Inserted += b.Inserted
	a.Replaced += b.Replaced
	a.Unchanged += b.Unchanged
	a.Deleted += b.Deleted
	a.Skipped += b.Skipped
	a.Errors += b.Errors
	if a.FirstError == "" {
		a.FirstError = b.FirstError
	}
	a.GeneratedKeys = append(a.GeneratedKeys, b.GeneratedKeys...)
	a.Changes = append(a.Changes, b.Changes...)
}

// summaryDatum is the write response object of the real server.
// changesMode is the return_changes optarg: off, true (changed documents
// only) or "always" (every document the write looked at).
type changesMode int

const (
	changesOff changesMode = iota
	changesOn
	changesAlways
)

func summaryDatum(s WriteSummary, returnChanges changesMode) map[string]any {
	out := map[string]any{
		"deleted":   float64(s.Deleted),
		"errors":    float64(s.Errors),
		"inserted":  float64(s.Inserted),
		"replaced":  float64(s.Replaced),
		"skipped":   float64(s.Skipped),
		"unchanged": float64(s.Unchanged),
	}
	if s.Errors > 0 && s.FirstError != "" {
		out["first_error"] = s.FirstError
	}
	if len(s.GeneratedKeys) > 0 {
		keys := make([]any, len(s.GeneratedKeys))
		for i, k := range s.GeneratedKeys {
			keys[i] = k
		}
		out["generated_keys"] = keys
	}
	if returnChanges != changesOff {
		changes := make([]any, 0, len(s.Changes))
		for _, c := range s.Changes {
			c := normalize(c).(map[string]any)
			if returnChanges == changesOn && equalDatum(c["old_val"], c["new_val"]) {
				continue // unchanged documents are listed only with "always"
			}
			changes = append(changes, c)
		}
		out["changes"] = changes
	}
	return out
}

func (e *evaluator) returnChanges(ctx context.Context, t *Term, n *env) (changesMode, error) {
	v, ok, err := e.optDatum(ctx, t, "return_changes", n)
	if err != nil || !ok {
		return changesOff, err
	}
	switch v {
	case true:
		return changesOn, nil
	case "always":
		return changesAlways, nil
	case false:
		return changesOff, nil
	}
	return changesOff, QueryLogic("Invalid return_changes value %s (options are true, false and 'always').", printDatum(v))
}

func evalInsert(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	tbl, err := e.tableArg(ctx, t, n)
	if err != nil {
		return nil, err
	}
	conflict := "error"
	if v, ok, err := e.optDatum(ctx, t, "conflict", n); err != nil {
		return nil, err
	} else if ok {
		s, isStr := v.(string)
		if !isStr || (s != "error" && s != "replace" && s != "update") {
			return nil, QueryLogic("rethinkdb-sim: insert conflict %s is not supported (use \"error\", \"replace\" or \"update\")", printDatum(v))
		}
		conflict = s
	}
	rc, err := e.returnChanges(ctx, t, n)
	if err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	var docs []any
	switch v.(type) {
	case *seqVal, *tableVal, []any:
		s, err := e.seq(ctx, v)
		if err != nil {
			return nil, err
		}
		docs = s.items
	default:
		d, err := e.asDatum(ctx, v)
		if err != nil {
			return nil, err
		}
		docs = []any{d}
	}
	pk := tbl.PrimaryKey()
	var total WriteSummary
	// One document per call, so that each document's outcome (and its
	// change, for return_changes) is known exactly.
	for _, d := range docs {
		m, ok := d.(map[string]any)
		if !ok {
			addSummary(&total, WriteSummary{Errors: 1, FirstError: "Expected type OBJECT but found " + datumType(d) + "."})
			continue
		}
		m = copyDatum(m).(map[string]any)
		var gen []string
		if _, has := m[pk]; !has {
			id := NewUUID()
			m[pk] = id
			gen = []string{id}
		}
		var old any
		if rc != changesOff {
			if old, err = e.get(ctx, tbl, m[pk]); err != nil {
				return nil, err
			}
		}
		s, err := tbl.Insert(ctx, []map[string]any{m}, conflict)
		if err != nil {
			return nil, err
		}
		s.GeneratedKeys = append(s.GeneratedKeys, gen...)
		if rc != changesOff && s.Changes == nil && (s.Inserted > 0 || s.Replaced > 0) {
			nv, err := e.get(ctx, tbl, m[pk])
			if err != nil {
				return nil, err
			}
			s.Changes = []map[string]any{{"new_val": nv, "old_val": old}}
		}
		addSummary(&total, s)
	}
	return summaryDatum(total, rc), nil
}

// target is one row a write applies to.
type target struct {
	t   Table
	key any
}

// writeTargets lists the rows of a selection.
func (e *evaluator) writeTargets(ctx context.Context, v any) ([]target, error) {
	switch v := v.(type) {
	case *singleVal:
		return []target{{v.t, v.key}}, nil
	case *tableVal, *seqVal:
		s, err := e.seq(ctx, v)
		if err != nil {
			return nil, err
		}
		if s.t == nil {
			return nil, QueryLogic("Expected type SELECTION but found %s.", typeName(v))
		}
		pk := s.t.PrimaryKey()
		out := make([]target, 0, len(s.items))
		for _, it := range s.items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			out = append(out, target{s.t, m[pk]})
		}
		return out, nil
	}
	return nil, QueryLogic("Expected type SELECTION but found %s.", typeName(v))
}

// selectionWrite evaluates what update, replace and delete share: the rows
// of the selection in argument 0, and the return_changes optarg.
func (e *evaluator) selectionWrite(ctx context.Context, t *Term, n *env) ([]target, changesMode, error) {
	sel, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, changesOff, err
	}
	targets, err := e.writeTargets(ctx, sel)
	if err != nil {
		return nil, changesOff, err
	}
	rc, err := e.returnChanges(ctx, t, n)
	if err != nil {
		return nil, changesOff, err
	}
	return targets, rc, nil
}

// modify runs a write over every target. mk computes the new document
// from the old one; a runtime error from mk counts as that row's error in
// the summary (as the server reports it) instead of aborting the query.
func (e *evaluator) modify(ctx context.Context, targets []target, rc changesMode, mk func(ctx context.Context, pk string, key, old any) (any, error)) (map[string]any, error) {
	var total WriteSummary
	for _, tg := range targets {
		var rowErr *Error
		var oldSeen, newSeen any
		pk := tg.t.PrimaryKey()
		s, err := tg.t.Modify(ctx, tg.key, func(old any) (any, error) {
			rowErr = nil
			old = normalize(old)
			nv, err := mk(ctx, pk, tg.key, old)
			if err != nil {
				if re, ok := err.(*Error); ok && re.Kind == RuntimeError {
					rowErr = re
					return old, nil
				}
				return nil, err
			}
			oldSeen, newSeen = old, nv
			return nv, nil
		})
		if err != nil {
			return nil, err
		}
		if rowErr != nil {
			switch {
			case s.Unchanged > 0:
				s.Unchanged--
			case s.Skipped > 0:
				s.Skipped--
			}
			s.Errors++
			if s.FirstError == "" {
				s.FirstError = rowErr.Msg
			}
		} else if rc != changesOff && s.Changes == nil && s.Errors == 0 && (s.Inserted+s.Replaced+s.Deleted) > 0 {
			s.Changes = []map[string]any{{"new_val": newSeen, "old_val": oldSeen}}
		}
		addSummary(&total, s)
	}
	return summaryDatum(total, rc), nil
}

func pkChanged(pk string, oldKey any, nv map[string]any, old any) error {
	if equalDatum(nv[pk], oldKey) {
		return nil
	}
	return QueryLogic("Primary key `%s` cannot be changed (`%s` -> `%s`).", pk, printDatum(old), printDatum(nv))
}

func evalUpdate(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	targets, rc, err := e.selectionWrite(ctx, t, n)
	if err != nil {
		return nil, err
	}
	patchFn, err := e.funcOrDatumArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	return e.modify(ctx, targets, rc, func(ctx context.Context, pk string, key, old any) (any, error) {
		if old == nil {
			return nil, nil // missing row: skipped
		}
		pv, err := e.callDatum(ctx, patchFn, old)
		if err != nil {
			return nil, err
		}
		if pv == nil {
			return old, nil
		}
		pm, ok := pv.(map[string]any)
		if !ok {
			return nil, QueryLogic("Inserted value must be an OBJECT (got %s):\n%s", datumType(pv), printDatum(pv))
		}
		om, ok := old.(map[string]any)
		if !ok {
			return nil, typeErr("OBJECT", old)
		}
		nv := mergeObjects(om, pm)
		if err := pkChanged(pk, om[pk], nv, old); err != nil {
			return nil, err
		}
		return nv, nil
	})
}

func evalReplace(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	targets, rc, err := e.selectionWrite(ctx, t, n)
	if err != nil {
		return nil, err
	}
	fn, err := e.funcOrDatumArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	return e.modify(ctx, targets, rc, func(ctx context.Context, pk string, key, old any) (any, error) {
		nv, err := e.callDatum(ctx, fn, old)
		if err != nil {
			return nil, err
		}
		if nv == nil {
			return nil, nil
		}
		nm, ok := nv.(map[string]any)
		if !ok {
			return nil, QueryLogic("Inserted value must be an OBJECT (got %s):\n%s", datumType(nv), printDatum(nv))
		}
		if _, has := nm[pk]; !has {
			return nil, QueryLogic("Inserted object must have primary key `%s`:\n%s", pk, printDatum(nv))
		}
		if err := pkChanged(pk, key, nm, old); err != nil {
			return nil, err
		}
		return nm, nil
	})
}

func evalDelete(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	targets, rc, err := e.selectionWrite(ctx, t, n)
	if err != nil {
		return nil, err
	}
	return e.modify(ctx, targets, rc, func(context.Context, string, any, any) (any, error) {
		return nil, nil
	})
}

// mergeStats merges the write results of forEach: numbers add up, arrays
// concatenate, and the first first_error is kept.
func mergeStats(acc, v map[string]any) {
	for k, x := range v {
		switch x := x.(type) {
		case float64:
			if a, ok := acc[k].(float64); ok {
				acc[k] = a + x
				continue
			}
		case []any:
			if a, ok := acc[k].([]any); ok {
				acc[k] = append(append([]any{}, a...), x...)
				continue
			}
		}
		if _, ok := acc[k]; !ok {
			acc[k] = x
		}
	}
}

func evalForEach(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
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
	acc := map[string]any{}
	for _, x := range s.items {
		r, err := e.callDatum(ctx, fn, x)
		if err != nil {
			return nil, err
		}
		results := []any{r}
		if arr, ok := r.([]any); ok {
			results = arr
		}
		for _, r := range results {
			m, ok := r.(map[string]any)
			if !ok {
				return nil, QueryLogic("FOR_EACH expects one or more basic write queries.")
			}
			mergeStats(acc, m)
		}
	}
	return acc, nil
}

func (e *evaluator) dbNameArg(ctx context.Context, t *Term, n *env) (string, error) {
	if err := argc(t, 1, 1); err != nil {
		return "", err
	}
	return e.stringArg(ctx, t, 0, n)
}

// configChange is the config_changes of a db or table create or drop: one
// change from the row before to the row after (nil for none).
func configChange(before, after any) []any {
	return []any{map[string]any{"new_val": normalize(after), "old_val": normalize(before)}}
}

func evalDBCreate(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	name, err := e.dbNameArg(ctx, t, n)
	if err != nil {
		return nil, err
	}
	row, err := e.b.DBCreate(ctx, name)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"config_changes": configChange(nil, row),
		"dbs_created":    float64(1),
	}, nil
}

func evalDBDrop(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	name, err := e.dbNameArg(ctx, t, n)
	if err != nil {
		return nil, err
	}
	old, tables, err := e.b.DBDrop(ctx, name)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"config_changes": configChange(old, nil),
		"dbs_dropped":    float64(1),
		"tables_dropped": float64(tables),
	}, nil
}

func evalDBList(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 0, 0); err != nil {
		return nil, err
	}
	dbs, err := e.b.DBs(ctx)
	if err != nil {
		return nil, err
	}
	// Colliding names are listed once, as the real server does.
	seen := map[string]bool{"rethinkdb": true}
	names := []string{"rethinkdb"}
	for _, d := range dbs {
		if !seen[d.Name] {
			seen[d.Name] = true
			names = append(names, d.Name)
		}
	}
	return sortedNames(names), nil
}

// sortedNames is a list of names as the server returns it: sorted, as an
// array datum.
func sortedNames(names []string) []any {
	sort.Strings(names)
	out := make([]any, len(names))
	for i, s := range names {
		out[i] = s
	}
	return out
}

// dbArgOrDefault reads the optional leading DB argument of tableCreate,
// tableDrop and tableList.
func (e *evaluator) dbArgOrDefault(ctx context.Context, t *Term, n *env, rest int) (string, int, error) {
	if len(t.Args) == rest {
		return e.defaultDB, 0, nil
	}
	if len(t.Args) != rest+1 {
		return "", 0, argc(t, rest, rest+1)
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return "", 0, err
	}
	d, ok := v.(*dbVal)
	if !ok {
		return "", 0, typeErr("DATABASE", v)
	}
	return d.name, 1, nil
}

func evalTableCreate(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	db, i, err := e.dbArgOrDefault(ctx, t, n, 1)
	if err != nil {
		return nil, err
	}
	name, err := e.stringArg(ctx, t, i, n)
	if err != nil {
		return nil, err
	}
	opts := TableCreateOpts{PrimaryKey: "id"}
	if v, ok, err := e.optDatum(ctx, t, "primary_key", n); err != nil {
		return nil, err
	} else if ok {
		s, isStr := v.(string)
		if !isStr {
			return nil, typeErr("STRING", v)
		}
		opts.PrimaryKey = s
	}
	row, err := e.b.TableCreate(ctx, db, name, opts)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"config_changes": configChange(nil, row),
		"tables_created": float64(1),
	}, nil
}

func evalTableDrop(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	db, i, err := e.dbArgOrDefault(ctx, t, n, 1)
	if err != nil {
		return nil, err
	}
	name, err := e.stringArg(ctx, t, i, n)
	if err != nil {
		return nil, err
	}
	old, err := e.b.TableDrop(ctx, db, name)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"config_changes": configChange(old, nil),
		"tables_dropped": float64(1),
	}, nil
}

func evalTableList(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	db, _, err := e.dbArgOrDefault(ctx, t, n, 0)
	if err != nil {
		return nil, err
	}
	names, err := e.b.TableList(ctx, db)
	if err != nil {
		return nil, err
	}
	return sortedNames(names), nil
}
