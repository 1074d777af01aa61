package node

import (
	"context"
	"fmt"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

// userTable is a user table; its documents live on its primary server and
// operations from other nodes are forwarded there.
type userTable struct {
	n                *Node
	id, db, name, pk string
}

var _ reql.Table = (*userTable)(nil)

func (t *userTable) DB() string         { return t.db }
func (t *userTable) Name() string       { return t.name }
func (t *userTable) PrimaryKey() string { return t.pk }

// route finds where the table's data is: here (local) or on peer id.
func (t *userTable) route(what string) (id string, local bool, err error) {
	n := t.n
	n.mu.Lock()
	defer n.mu.Unlock()
	tm := n.meta.Tables[t.id]
	if tm == nil || tm.Deleted {
		return "", false, reql.OpFailed("Table `%s.%s` does not exist.", t.db, t.name)
	}
	if !n.proxy && tm.Primary == n.id {
		return "", true, nil
	}
	if pc := n.conns[tm.Primary]; pc != nil && !pc.info.Proxy {
		return tm.Primary, false, nil
	}
	return "", false, notAvailable(what)
}

func (t *userTable) Get(ctx context.Context, key any) (any, error) {
	id, local, err := t.route("read")
	if err != nil {
		return nil, err
	}
	if local {
		return t.n.localGet(t.id, key)
	}
	r, err := t.n.call(ctx, id, &rpcReq{Op: "get", Table: t.id, Key: key}, "read")
	if err != nil {
		return nil, err
	}
	return r.Doc, nil
}

func (t *userTable) Scan(ctx context.Context) ([]any, error) {
	id, local, err := t.route("read")
	if err != nil {
		return nil, err
	}
	if local {
		return t.n.localScan(t.id)
	}
	r, err := t.n.call(ctx, id, &rpcReq{Op: "scan", Table: t.id}, "read")
	if err != nil {
		return nil, err
	}
	if r.Docs == nil {
		return []any{}, nil
	}
	return r.Docs, nil
}

func (t *userTable) Insert(ctx context.Context, docs []map[string]any, conflict string) (reql.WriteSummary, error) {
	id, local, err := t.route("write")
	if err != nil {
		return reql.WriteSummary{}, err
	}
	if local {
		return t.n.localInsert(t.id, docs, conflict)
	}
	r, err := t.n.call(ctx, id, &rpcReq{Op: "insert", Table: t.id, Docs: docs, Conflict: conflict}, "write")
	if err != nil {
		return reql.WriteSummary{}, err
	}
	if r.Summary == nil {
		return reql.WriteSummary{}, nil
	}
	return *r.Summary, nil
}

func (t *userTable) cas(ctx context.Context, key, old, nv any) (bool, error) {
	id, local, err := t.route("write")
	if err != nil {
		return false, err
	}
	if local {
		return t.n.localCAS(t.id, key, old, nv)
	}
	r, err := t.n.call(ctx, id, &rpcReq{Op: "cas", Table: t.id, Key: key, Old: old, New: nv}, "write")
	if err != nil {
		return false, err
	}
	return r.OK, nil
}

// Modify reads, computes f without any lock, and writes back only if the
// document did not change meanwhile (compare-and-set), retrying otherwise.
func (t *userTable) Modify(ctx context.Context, key any, f func(old any) (any, error)) (reql.WriteSummary, error) {
	var s reql.WriteSummary
	for attempt := 0; attempt < 100; attempt++ {
		old, err := t.Get(ctx, key)
		if err != nil {
			return s, err
		}
		nv, err := f(deepCopy(old))
		if err != nil {
			return s, err
		}
		if msg := checkNewDoc(t.pk, key, old, nv); msg != "" {
			s.Errors, s.FirstError = 1, msg
			return s, nil
		}
		if canon(old) == canon(nv) {
			if old == nil {
				s.Skipped = 1
			} else {
				s.Unchanged = 1
			}
			return s, nil
		}
		ok, err := t.cas(ctx, key, old, nv)
		if err != nil {
			return s, err
		}
		if ok {
			countChange(&s, old, nv)
			return s, nil
		}
		if err := ctx.Err(); err != nil {
			return s, err
		}
	}
	return s, reql.OpFailed("Cannot perform write: too many concurrent changes to the same document.")
}

// checkNewDoc validates a replacement document; "" means fine.
func checkNewDoc(pk string, key, old, nv any) string {
	if nv == nil {
		return ""
	}
	m, ok := nv.(map[string]any)
	if !ok {
		return fmt.Sprintf("Expected type OBJECT but found %s.", reql.TypeName(nv))
	}
	k, ok := m[pk]
	if !ok {
		return "Inserted object must have primary key `" + pk + "`:\n" + pretty(nv)
	}
	if canon(k) != canon(key) {
		if old != nil {
			return "Primary key `" + pk + "` cannot be changed (`" + pretty(old) + "` -> `" + pretty(nv) + "`)."
		}
		return "Primary key `" + pk + "` cannot be changed."
	}
	return ""
}

func countChange(s *reql.WriteSummary, old, nv any) {
	switch {
	case old == nil && nv != nil:
		s.Inserted++
	case old != nil && nv == nil:
		s.Deleted++
	case old != nil:
		s.Replaced++
	}
	s.Changes = append(s.Changes, map[string]any{"old_val": old, "new_val": nv})
}

func (t *userTable) Changes(ctx context.Context, includeInitial bool) (reql.Stream, error) {
	if _, _, err := t.route("read"); err != nil {
		return nil, err
	}
	return newFeed(ctx, t.n, t.pk, includeInitial, func(ctx context.Context) ([]any, error) {
		return t.Scan(ctx)
	})
}
