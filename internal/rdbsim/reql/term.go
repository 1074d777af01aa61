package reql

import (
	"fmt"
	"sort"

	p "gopkg.in/rethinkdb/rethinkdb-go.v6/ql2"
)

// Term is one node of a parsed ReQL term tree. A literal datum has Type 0.
type Term struct {
	Type  p.Term_TermType
	Datum any
	Args  []*Term
	Opts  map[string]*Term
}

// termName is the ql2 name of a term type, e.g. "GROUP".
func termName(t p.Term_TermType) string {
	if n, ok := p.Term_TermType_name[int32(t)]; ok {
		return n
	}
	return "UNKNOWN"
}

// ParseTerm turns the JSON form of a term (as encoding/json decodes it) into
// a Term tree. Arrays are [type, args, optargs]; objects are MAKE_OBJ whose
// values are terms; everything else is a datum literal.
func ParseTerm(raw any) (*Term, error) {
	switch v := raw.(type) {
	case []any:
		if len(v) == 0 || len(v) > 3 {
			return nil, clientErr("Expected a term of the form [type, args, optargs], got an array of length %d.", len(v))
		}
		n, ok := v[0].(float64)
		if !ok || n != float64(int32(n)) {
			return nil, clientErr("Expected a term type number, got %s.", printDatum(v[0]))
		}
		t := &Term{Type: p.Term_TermType(n)}
		if t.Type == p.Term_DATUM {
			// [1, datum]: a literal sent explicitly.
			if len(v) > 1 {
				t.Type, t.Datum = 0, v[1]
			} else {
				t.Type = 0
			}
			return t, nil
		}
		if len(v) > 1 {
			args, ok := v[1].([]any)
			if !ok {
				return nil, clientErr("Expected the arguments of %s to be an array.", termName(t.Type))
			}
			for _, a := range args {
				at, err := ParseTerm(a)
				if err != nil {
					return nil, err
				}
				t.Args = append(t.Args, at)
			}
		}
		if len(v) > 2 {
			opts, ok := v[2].(map[string]any)
			if !ok {
				return nil, clientErr("Expected the optargs of %s to be an object.", termName(t.Type))
			}
			o, err := parseOpts(opts)
			if err != nil {
				return nil, err
			}
			t.Opts = o
		}
		return t, nil
	case map[string]any:
		o, err := parseOpts(v)
		if err != nil {
			return nil, err
		}
		return &Term{Type: p.Term_MAKE_OBJ, Opts: o}, nil
	default:
		return &Term{Datum: v}, nil
	}
}

func parseOpts(m map[string]any) (map[string]*Term, error) {
	out := make(map[string]*Term, len(m))
	for k, raw := range m {
		t, err := ParseTerm(raw)
		if err != nil {
			return nil, err
		}
		out[k] = t
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func clientErr(format string, a ...any) *Error {
	return &Error{Kind: ClientError, Msg: fmt.Sprintf(format, a...)}
}

func compileErr(format string, a ...any) *Error {
	return &Error{Kind: CompileError, Msg: fmt.Sprintf(format, a...)}
}

func nonExistence(format string, a ...any) *Error {
	return &Error{Kind: RuntimeError, Type: ErrNonExistence, Msg: fmt.Sprintf(format, a...)}
}

func userErr(msg string) *Error {
	return &Error{Kind: RuntimeError, Type: ErrUser, Msg: msg}
}

// unsupported is the error for a term outside the sim's subset: a gap shows
// up as a failing query, never as a wrong answer.
func unsupported(t p.Term_TermType) *Error {
	return QueryLogic("rethinkdb-sim: term %s (%d) is not supported", termName(t), int32(t))
}
