package node

import (
	"context"
	"sync"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

// feed is a changefeed: it recomputes its table whenever the node's state
// changes (membership, metadata, data) and emits the differences by key.
type feed struct {
	n       *Node
	key     string
	compute func(ctx context.Context) ([]any, error)

	mu      sync.Mutex
	prev    map[string]any // canonical key -> row
	order   []string       // keys of the baseline, in table order
	started bool
	initial bool
	closed  bool
	wait    chan struct{} // the node's change channel seen at the last compute
}

var _ reql.Stream = (*feed)(nil)

// newFeed opens a feed. Its baseline is taken now, not at the first Next:
// the driver answers a changefeed at once and asks for changes later, and
// changes made in between must not be lost.
func newFeed(ctx context.Context, n *Node, key string, includeInitial bool, compute func(ctx context.Context) ([]any, error)) (*feed, error) {
	f := &feed{n: n, key: key, compute: compute, initial: includeInitial}
	cur, order, err := f.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	f.prev, f.order = cur, order
	return f, nil
}

func (f *feed) Feed() bool { return true }

func (f *feed) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

func (f *feed) snapshot(ctx context.Context) (map[string]any, []string, error) {
	f.n.mu.Lock()
	f.wait = f.n.changeCh
	closing := f.n.closing
	f.n.mu.Unlock()
	if closing {
		return nil, nil, reql.OpFailed("Changefeed aborted (unavailable).")
	}
	rows, err := f.compute(ctx)
	if err != nil {
		return nil, nil, err
	}
	m := map[string]any{}
	var order []string
	for _, r := range rows {
		obj, ok := r.(map[string]any)
		if !ok {
			continue
		}
		k := canon(obj[f.key])
		if _, dup := m[k]; !dup {
			order = append(order, k)
		}
		m[k] = r
	}
	return m, order, nil
}

// Next blocks until there is at least one change, then returns all of them.
func (f *feed) Next(ctx context.Context) ([]any, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, false, nil
	}
	if !f.started {
		f.started = true
		if f.initial && len(f.order) > 0 {
			var batch []any
			for _, k := range f.order {
				batch = append(batch, map[string]any{"new_val": f.prev[k]})
			}
			return batch, true, nil
		}
	}
	for {
		select {
		case <-f.wait:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		cur, order, err := f.snapshot(ctx)
		if err != nil {
			return nil, false, err
		}
		var batch []any
		for _, k := range order {
			if old, ok := f.prev[k]; !ok {
				batch = append(batch, map[string]any{"new_val": cur[k], "old_val": nil})
			} else if canon(old) != canon(cur[k]) {
				batch = append(batch, map[string]any{"new_val": cur[k], "old_val": old})
			}
		}
		for k, old := range f.prev {
			if _, ok := cur[k]; !ok {
				batch = append(batch, map[string]any{"new_val": nil, "old_val": old})
			}
		}
		f.prev = cur
		if len(batch) > 0 {
			return batch, true, nil
		}
	}
}
