package reql

import (
	"context"
	"sync"

	p "gopkg.in/rethinkdb/rethinkdb-go.v6/ql2"
)

func init() {
	register(p.Term_CHANGES, evalChanges)
}

// NewSliceStream returns a finite Stream that yields items in one batch;
// the driver splits it into batches.
func NewSliceStream(items []any) Stream { return &sliceStream{items: items} }

type sliceStream struct {
	mu    sync.Mutex
	items []any
	done  bool
}

func (s *sliceStream) Next(ctx context.Context) ([]any, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil, false, nil
	}
	s.done = true
	items := s.items
	s.items = nil
	return items, false, nil
}

func (s *sliceStream) Feed() bool   { return false }
func (s *sliceStream) Close() error { return nil }

// mapStream transforms (and drops) the elements of a changefeed lazily.
type mapStream struct {
	src Stream
	fn  func(ctx context.Context, x any) (any, bool, error)
}

func (m *mapStream) Next(ctx context.Context) ([]any, bool, error) {
	for {
		batch, more, err := m.src.Next(ctx)
		if err != nil {
			return nil, false, err
		}
		out := make([]any, 0, len(batch))
		for _, x := range batch {
			y, keep, err := m.fn(ctx, x)
			if err != nil {
				return nil, false, wrapErr(err)
			}
			if keep {
				out = append(out, y)
			}
		}
		if len(out) > 0 || !more {
			return out, more, nil
		}
	}
}

func (m *mapStream) Feed() bool   { return m.src.Feed() }
func (m *mapStream) Close() error { return m.src.Close() }

// limitStream ends a changefeed after n elements.
type limitStream struct {
	src  Stream
	left int
}

func (l *limitStream) Next(ctx context.Context) ([]any, bool, error) {
	if l.left <= 0 {
		return nil, false, nil
	}
	batch, more, err := l.src.Next(ctx)
	if err != nil {
		return nil, false, err
	}
	if len(batch) > l.left {
		batch = batch[:l.left]
	}
	l.left -= len(batch)
	return batch, more && l.left > 0, nil
}

func (l *limitStream) Feed() bool   { return l.src.Feed() }
func (l *limitStream) Close() error { return l.src.Close() }

// prefixStream yields fixed elements before those of src (the initial value
// of a point changefeed).
type prefixStream struct {
	first []any
	src   Stream
}

func (s *prefixStream) Next(ctx context.Context) ([]any, bool, error) {
	if s.first != nil {
		b := s.first
		s.first = nil
		return b, true, nil
	}
	return s.src.Next(ctx)
}

func (s *prefixStream) Feed() bool   { return s.src.Feed() }
func (s *prefixStream) Close() error { return s.src.Close() }

func (e *evaluator) feedMap(f *feedVal, fn func(ctx context.Context, x any) (any, bool, error)) *feedVal {
	return &feedVal{s: &mapStream{src: f.s, fn: fn}, atom: f.atom}
}

func evalChanges(e *evaluator, ctx context.Context, t *Term, n *env) (any, error) {
	if err := argc(t, 1, 1); err != nil {
		return nil, err
	}
	for k := range t.Opts {
		if k != "include_initial" && k != "squash" {
			return nil, QueryLogic("rethinkdb-sim: changes option `%s` is not supported", k)
		}
	}
	initial := false
	if v, ok, err := e.optDatum(ctx, t, "include_initial", n); err != nil {
		return nil, err
	} else if ok {
		b, isBool := v.(bool)
		if !isBool {
			return nil, typeErr("BOOL", v)
		}
		initial = b
	}
	return e.feedOf(ctx, t.Args[0], n, initial)
}

// feedOf opens the changefeed of the selection that term denotes: a table,
// a get, or a filter of either.
func (e *evaluator) feedOf(ctx context.Context, t *Term, n *env, initial bool) (*feedVal, error) {
	if t.Type == p.Term_FILTER && len(t.Args) == 2 {
		inner, err := e.feedOf(ctx, t.Args[0], n, initial)
		if err != nil {
			return nil, err
		}
		pred, err := e.funcOrDatumArg(ctx, t, 1, n)
		if err != nil {
			inner.s.Close()
			return nil, err
		}
		return e.feedMap(inner, func(ctx context.Context, x any) (any, bool, error) {
			ch, ok := x.(map[string]any)
			if !ok {
				return x, true, nil
			}
			out := make(map[string]any, len(ch))
			for k, v := range ch {
				out[k] = v
			}
			keep := false
			for _, side := range []string{"new_val", "old_val"} {
				v, has := ch[side]
				if !has {
					continue
				}
				if v != nil {
					match, err := e.predicate(ctx, pred, v, e.filterDefault(ctx, t, n))
					if err != nil {
						return nil, false, err
					}
					if !match {
						v = nil
					}
				}
				out[side] = v
				keep = keep || v != nil
			}
			return out, keep, nil
		}), nil
	}
	v, err := e.eval(ctx, t, n)
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case *tableVal:
		s, err := v.t.Changes(ctx, initial)
		if err != nil {
			return nil, err
		}
		return e.feedMap(&feedVal{s: s}, func(_ context.Context, x any) (any, bool, error) {
			return normalize(x), true, nil
		}), nil
	case *singleVal:
		s, err := v.t.Changes(ctx, false)
		if err != nil {
			return nil, err
		}
		pk, key := v.t.PrimaryKey(), v.key
		f := e.feedMap(&feedVal{s: s, atom: true}, func(ctx context.Context, x any) (any, bool, error) {
			ch, ok := x.(map[string]any)
			if !ok {
				return nil, false, nil
			}
			for _, side := range []string{"new_val", "old_val"} {
				if doc, ok := ch[side].(map[string]any); ok && equalDatum(normalize(doc[pk]), key) {
					return normalize(ch), true, nil
				}
			}
			return nil, false, nil
		})
		if initial {
			// Read after subscribing so that no change is lost in between.
			row, err := e.get(ctx, v.t, key)
			if err != nil {
				f.s.Close()
				return nil, err
			}
			f.s = &prefixStream{first: []any{map[string]any{"new_val": row}}, src: f.s}
		}
		return f, nil
	}
	return nil, QueryLogic("rethinkdb-sim: changes on %s is not supported", typeName(v))
}
