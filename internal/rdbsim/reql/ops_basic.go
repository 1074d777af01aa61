package reql

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	p "gopkg.in/rethinkdb/rethinkdb-go.v6/ql2"
)

func init() {
	register(p.Term_MAKE_ARRAY, evalMakeArray)
	register(p.Term_MAKE_OBJ, evalMakeObj)
	register(p.Term_VAR, evalVar)
	register(p.Term_IMPLICIT_VAR, evalImplicitVar)
	register(p.Term_FUNC, evalFunc)
	register(p.Term_FUNCALL, evalFuncall)
	register(p.Term_BRANCH, evalBranch)
	register(p.Term_AND, evalAnd)
	register(p.Term_OR, evalOr)
	register(p.Term_NOT, evalNot)
	register(p.Term_EQ, compareTerm(func(c int) bool { return c == 0 }, true))
	register(p.Term_NE, evalNe)
	register(p.Term_LT, compareTerm(func(c int) bool { return c < 0 }, false))
	register(p.Term_LE, compareTerm(func(c int) bool { return c <= 0 }, false))
	register(p.Term_GT, compareTerm(func(c int) bool { return c > 0 }, false))
	register(p.Term_GE, compareTerm(func(c int) bool { return c >= 0 }, false))
	register(p.Term_ADD, evalAdd)
	register(p.Term_SUB, arith("-", func(a, b float64) (float64, error) { return a - b, nil }))
	register(p.Term_MUL, evalMul)
	register(p.Term_DIV, arith("/", func(a, b float64) (float64, error) {
		if b == 0 {
			return 0, QueryLogic("Cannot divide by zero.")
		}
		return a / b, nil
	}))
	register(p.Term_MOD, arith("%", func(a, b float64) (float64, error) {
		if b == 0 {
			return 0, QueryLogic("Cannot take %s mod 0.", formatNumber(a))
		}
		return math.Mod(a, b), nil
	}))
	register(p.Term_FLOOR, rounding(math.Floor))
	register(p.Term_CEIL, rounding(math.Ceil))
	register(p.Term_ROUND, rounding(math.Round))
	register(p.Term_DEFAULT, evalDefault)
	register(p.Term_ERROR, evalError)
	register(p.Term_COERCE_TO, evalCoerceTo)
	register(p.Term_TYPE_OF, evalTypeOf)
	register(p.Term_OBJECT, evalObject)
	register(p.Term_UUID, evalUUID)
	register(p.Term_NOW, evalNow)
	register(p.Term_EPOCH_TIME, evalEpochTime)
	register(p.Term_TO_EPOCH_TIME, evalToEpochTime)
	register(p.Term_TO_JSON_STRING, evalToJSON)
	register(p.Term_JSON, evalJSON)
	register(p.Term_MATCH, evalMatch)
	register(p.Term_SPLIT, evalSplit)
	register(p.Term_UPCASE, stringMap(strings.ToUpper))
	register(p.Term_DOWNCASE, stringMap(strings.ToLower))
	register(p.Term_ASC, evalOrder(false))
	register(p.Term_DESC, evalOrder(true))
}

func evalMakeArray(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	return e.datumArgs(ctx, t, n)
}

func evalMakeObj(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	out := make(map[string]any, len(t.Opts))
	for k, ot := range t.Opts {
		v, err := e.eval(ctx, ot, n)
		if err != nil {
			return nil, err
		}
		if v, err = e.asDatum(ctx, v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

func evalVar(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	id, ok := t.Args[0].Datum.(float64)
	if !ok {
		return nil, compileErr("Expected a variable number.")
	}
	v, ok := n.lookup(id)
	if !ok {
		return nil, compileErr("Variable name not found.")
	}
	return v, nil
}

func evalImplicitVar(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	v, ok := n.implicitVar()
	if !ok {
		return nil, compileErr("r.row is not defined in this context.")
	}
	return v, nil
}

func evalFunc(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	pv, err := e.datumArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	ps, ok := pv.([]any)
	if !ok {
		return nil, compileErr("Expected the parameters of FUNC to be an array.")
	}
	f := &funcVal{body: t.Args[1], env: n}
	for _, x := range ps {
		id, ok := x.(float64)
		if !ok {
			return nil, compileErr("Expected the parameters of FUNC to be numbers.")
		}
		f.params = append(f.params, id)
	}
	return f, nil
}

// evalFuncall is r.do: FUNCALL(func, args...).
func evalFuncall(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, -1); err != nil {
		return nil, err
	}
	fn, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	args, err := e.argsFrom(ctx, t, 1, n, e.arg)
	if err != nil {
		return nil, err
	}
	return e.call(ctx, fn, args...)
}

func evalBranch(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if len(t.Args) < 3 || len(t.Args)%2 == 0 {
		return nil, compileErr("Cannot call `branch` term with an even number of arguments.")
	}
	for i := 0; i+1 < len(t.Args); i += 2 {
		c, err := e.datumArg(ctx, t, i, n)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return e.arg(ctx, t, i+1, n)
		}
	}
	return e.arg(ctx, t, len(t.Args)-1, n)
}

func evalAnd(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	var last any = true
	for i := range t.Args {
		v, err := e.datumArg(ctx, t, i, n)
		if err != nil {
			return nil, err
		}
		if !truthy(v) {
			return v, nil
		}
		last = v
	}
	return last, nil
}

func evalOr(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	var last any = false
	for i := range t.Args {
		v, err := e.datumArg(ctx, t, i, n)
		if err != nil {
			return nil, err
		}
		if truthy(v) {
			return v, nil
		}
		last = v
	}
	return last, nil
}

func evalNot(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	v, err := e.datumArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	return !truthy(v), nil
}

func (e *evaluator) datumArgs(ctx context.Context, t *Term, n *env) ([]any, error) {
	return e.argsFrom(ctx, t, 0, n, e.datumArg)
}

func compareTerm(ok func(int) bool, eq bool) handler {
	return func(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
		if err := argc(t, 2, -1); err != nil {
			return nil, err
		}
		vs, err := e.datumArgs(ctx, t, n)
		if err != nil {
			return nil, err
		}
		for i := 0; i+1 < len(vs); i++ {
			if eq {
				if !equalDatum(vs[i], vs[i+1]) {
					return false, nil
				}
				continue
			}
			if !ok(compareDatum(vs[i], vs[i+1])) {
				return false, nil
			}
		}
		return true, nil
	}
}

func evalNe(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	v, err := compareTerm(nil, true)(e, ctx, t, n)
	if err != nil {
		return nil, err
	}
	return !v.(bool), nil
}

func evalAdd(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, -1); err != nil {
		return nil, err
	}
	vs, err := e.datumArgs(ctx, t, n)
	if err != nil {
		return nil, err
	}
	acc := vs[0]
	for _, v := range vs[1:] {
		switch a := acc.(type) {
		case float64:
			b, ok := v.(float64)
			if !ok {
				return nil, typeErr("NUMBER", v)
			}
			acc = a + b
		case string:
			b, ok := v.(string)
			if !ok {
				return nil, typeErr("STRING", v)
			}
			acc = a + b
		case []any:
			b, ok := v.([]any)
			if !ok {
				return nil, typeErr("ARRAY", v)
			}
			acc = append(append([]any{}, a...), b...)
		case map[string]any:
			if datumType(a) != "PTYPE<TIME>" {
				return nil, typeErr("NUMBER", acc)
			}
			b, ok := v.(float64)
			if !ok {
				return nil, typeErr("NUMBER", v)
			}
			acc = timeDatum(a["epoch_time"].(float64)+b, a["timezone"])
		default:
			return nil, typeErr("NUMBER", acc)
		}
	}
	return acc, nil
}

func arith(op string, f func(a, b float64) (float64, error)) handler {
	return func(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
		if err := argc(t, 1, -1); err != nil {
			return nil, err
		}
		vs, err := e.datumArgs(ctx, t, n)
		if err != nil {
			return nil, err
		}
		acc, ok := vs[0].(float64)
		if !ok {
			if tm, isTime := vs[0].(map[string]any); isTime && op == "-" && datumType(tm) == "PTYPE<TIME>" && len(vs) == 2 {
				switch b := vs[1].(type) {
				case float64:
					return timeDatum(tm["epoch_time"].(float64)-b, tm["timezone"]), nil
				case map[string]any:
					if datumType(b) == "PTYPE<TIME>" {
						return tm["epoch_time"].(float64) - b["epoch_time"].(float64), nil
					}
				}
			}
			return nil, typeErr("NUMBER", vs[0])
		}
		for _, v := range vs[1:] {
			b, ok := v.(float64)
			if !ok {
				return nil, typeErr("NUMBER", v)
			}
			if acc, err = f(acc, b); err != nil {
				return nil, err
			}
		}
		return acc, nil
	}
}

func evalMul(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, -1); err != nil {
		return nil, err
	}
	vs, err := e.datumArgs(ctx, t, n)
	if err != nil {
		return nil, err
	}
	acc := vs[0]
	for _, v := range vs[1:] {
		switch a := acc.(type) {
		case float64:
			switch b := v.(type) {
			case float64:
				acc = a * b
			case []any:
				acc, err = repeat(b, a)
			default:
				return nil, typeErr("NUMBER", v)
			}
		case []any:
			b, ok := v.(float64)
			if !ok {
				return nil, typeErr("NUMBER", v)
			}
			acc, err = repeat(a, b)
		default:
			return nil, typeErr("NUMBER", acc)
		}
		if err != nil {
			return nil, err
		}
	}
	return acc, nil
}

func repeat(a []any, times float64) ([]any, error) {
	if times < 0 || times != math.Trunc(times) {
		return nil, QueryLogic("Number not a non-negative integer: %s", formatNumber(times))
	}
	out := make([]any, 0, len(a)*int(times))
	for i := 0; i < int(times); i++ {
		out = append(out, a...)
	}
	return out, nil
}

func rounding(f func(float64) float64) handler {
	return func(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
		if err := argc(t, 1, 1); err != nil {
			return nil, err
		}
		x, err := e.numberArg(ctx, t, 0, n)
		if err != nil {
			return nil, err
		}
		return f(x), nil
	}
}

// evalDefault is x.default(d): d (or d(message) for a function) when x is
// null or fails with a non-existence error; other errors propagate.
func evalDefault(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	var msg any
	switch {
	case err != nil && isNonExistence(err):
		msg = err.(*Error).Msg
	case err != nil:
		return nil, err
	case v != nil:
		return v, nil
	}
	d, err := e.arg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	if _, ok := d.(*funcVal); ok {
		return e.call(ctx, d, msg)
	}
	return d, nil
}

func evalError(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 0, 1); err != nil {
		return nil, err
	}
	if len(t.Args) == 0 {
		return nil, QueryLogic("Empty ERROR term outside a default block.")
	}
	msg, err := e.stringArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	return nil, userErr(msg)
}

func evalCoerceTo(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	to, err := e.stringArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	to = strings.ToLower(to)
	if s, ok := v.(*seqVal); ok && !s.array || isTable(v) {
		seq, err := e.seq(ctx, v)
		if err != nil {
			return nil, err
		}
		switch to {
		case "array":
			return seq.items, nil
		case "object":
			return pairsToObject(seq.items)
		}
		return nil, QueryLogic("Cannot coerce %s to %s.", typeName(v), strings.ToUpper(to))
	}
	if _, ok := v.(*feedVal); ok {
		return nil, QueryLogic("Cannot coerce STREAM to %s.", strings.ToUpper(to))
	}
	d, err := e.asDatum(ctx, v)
	if err != nil {
		return nil, err
	}
	from := datumType(d)
	switch {
	case to == strings.ToLower(from):
		return d, nil
	case to == "string":
		switch d := d.(type) {
		case float64:
			return formatNumber(d), nil
		case string:
			return d, nil
		default:
			b, err := json.Marshal(d)
			if err != nil {
				return nil, QueryLogic("Cannot coerce %s to STRING.", from)
			}
			return string(b), nil
		}
	case to == "number":
		if s, ok := d.(string); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				return nil, QueryLogic("Could not coerce `%s` to NUMBER.", s)
			}
			return f, nil
		}
	case to == "array":
		if m, ok := d.(map[string]any); ok {
			return pairs(m), nil
		}
	case to == "object":
		if a, ok := d.([]any); ok {
			return pairsToObject(a)
		}
	case to == "bool":
		return truthy(d), nil
	}
	return nil, QueryLogic("Cannot coerce %s to %s.", from, strings.ToUpper(to))
}

func isTable(v any) bool { _, ok := v.(*tableVal); return ok }

func pairsToObject(items []any) (any, error) {
	out := map[string]any{}
	for _, it := range items {
		pair, ok := it.([]any)
		if !ok || len(pair) != 2 {
			return nil, QueryLogic("Expected array of size 2, but got size %d.", len(pair))
		}
		k, ok := pair[0].(string)
		if !ok {
			return nil, typeErr("STRING", pair[0])
		}
		out[k] = pair[1]
	}
	return out, nil
}

func evalTypeOf(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	v, err := e.arg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	return typeName(v), nil
}

func evalObject(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if len(t.Args)%2 != 0 {
		return nil, QueryLogic("OBJECT expects an even number of arguments (but found %d).", len(t.Args))
	}
	out := map[string]any{}
	for i := 0; i < len(t.Args); i += 2 {
		k, err := e.stringArg(ctx, t, i, n)
		if err != nil {
			return nil, err
		}
		if _, dup := out[k]; dup {
			return nil, QueryLogic("Duplicate key `%s` in object.  (got `%s` and `%s` as values)", k, printDatum(out[k]), "…")
		}
		v, err := e.datumArg(ctx, t, i+1, n)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// NewUUID returns a random (version 4) UUID string.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func evalUUID(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if len(t.Args) != 0 {
		return nil, QueryLogic("rethinkdb-sim: r.uuid with an argument is not supported")
	}
	return NewUUID(), nil
}

func timeDatum(epoch float64, tz any) map[string]any {
	if tz == nil {
		tz = "+00:00"
	}
	return map[string]any{"$reql_type$": "TIME", "epoch_time": epoch, "timezone": tz}
}

func evalNow(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	now := time.Now()
	return timeDatum(math.Round(float64(now.UnixMilli()))/1000, nil), nil
}

func evalEpochTime(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	x, err := e.numberArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	return timeDatum(x, nil), nil
}

func evalToEpochTime(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	v, err := e.datumArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok || datumType(m) != "PTYPE<TIME>" {
		return nil, typeErr("PTYPE<TIME>", v)
	}
	return m["epoch_time"], nil
}

func evalToJSON(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	v, err := e.datumArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, QueryLogic("%s", err.Error())
	}
	return string(b), nil
}

func evalJSON(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	s, err := e.stringArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, QueryLogic("Failed to parse \"%s\" as JSON: %s", s, err.Error())
	}
	return v, nil
}

func evalMatch(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 2, 2); err != nil {
		return nil, err
	}
	s, err := e.stringArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	pat, err := e.stringArg(ctx, t, 1, n)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		return nil, QueryLogic("Error in regexp `%s` (portion `%s`): %s", pat, pat, err.Error())
	}
	m := re.FindStringSubmatchIndex(s)
	if m == nil {
		return nil, nil
	}
	runes := func(i int) float64 { return float64(utf8.RuneCountInString(s[:i])) }
	groups := []any{}
	for g := 1; g < len(m)/2; g++ {
		if m[2*g] < 0 {
			groups = append(groups, nil)
			continue
		}
		groups = append(groups, map[string]any{
			"start": runes(m[2*g]), "end": runes(m[2*g+1]), "str": s[m[2*g]:m[2*g+1]],
		})
	}
	return map[string]any{"start": runes(m[0]), "end": runes(m[1]), "str": s[m[0]:m[1]], "groups": groups}, nil
}

func evalSplit(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 3); err != nil {
		return nil, err
	}
	s, err := e.stringArg(ctx, t, 0, n)
	if err != nil {
		return nil, err
	}
	var sep any
	if len(t.Args) > 1 {
		if sep, err = e.datumArg(ctx, t, 1, n); err != nil {
			return nil, err
		}
	}
	limit := -1
	if len(t.Args) > 2 {
		lv, err := e.datumArg(ctx, t, 2, n)
		if err != nil {
			return nil, err
		}
		if lv != nil {
			f, ok := lv.(float64)
			if !ok {
				return nil, typeErr("NUMBER", lv)
			}
			limit = int(f)
		}
	}
	var parts []string
	switch sep := sep.(type) {
	case nil:
		// Split on runs of whitespace, dropping empty strings.
		parts = strings.Fields(s)
		if limit >= 0 && len(parts) > limit+1 {
			// Re-split keeping the remainder intact.
			rest := s
			parts = nil
			for i := 0; i < limit; i++ {
				rest = strings.TrimLeft(rest, " \t\n\r\v\f")
				j := strings.IndexAny(rest, " \t\n\r\v\f")
				if j < 0 {
					break
				}
				parts = append(parts, rest[:j])
				rest = rest[j:]
			}
			if rest = strings.TrimLeft(rest, " \t\n\r\v\f"); rest != "" {
				parts = append(parts, rest)
			}
		}
	case string:
		if sep == "" {
			for _, r := range s {
				parts = append(parts, string(r))
			}
			if limit >= 0 && len(parts) > limit+1 {
				parts = append(parts[:limit], strings.Join(parts[limit:], ""))
			}
		} else {
			parts = strings.SplitN(s, sep, limit+1)
			if limit < 0 {
				parts = strings.Split(s, sep)
			}
		}
	default:
		return nil, typeErr("STRING", sep)
	}
	out := make([]any, len(parts))
	for i, x := range parts {
		out[i] = x
	}
	return out, nil
}

func stringMap(f func(string) string) handler {
	return func(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
		if err := argc(t, 1, 1); err != nil {
			return nil, err
		}
		s, err := e.stringArg(ctx, t, 0, n)
		if err != nil {
			return nil, err
		}
		return f(s), nil
	}
}

func evalOrder(desc bool) handler {
	return func(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
		if err := argc(t, 1, 1); err != nil {
			return nil, err
		}
		v, err := e.arg(ctx, t, 0, n)
		if err != nil {
			return nil, err
		}
		return &orderVal{key: v, desc: desc}, nil
	}
}
