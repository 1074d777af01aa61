package node

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

// tableData holds the documents of a table this server hosts, by the JSON
// encoding of their primary key.
type tableData struct {
	docs map[string]any
}

func newTableData() *tableData { return &tableData{docs: map[string]any{}} }

func keyString(k any) string {
	b, err := json.Marshal(k)
	if err != nil {
		return ""
	}
	return string(b)
}

// canon is a value's canonical JSON (object keys sorted), for comparisons.
func canon(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// compareKeys orders primary keys as ReQL does for the types keys can have:
// numbers before strings, numbers by value, strings by bytes.
func compareKeys(a, b any) int {
	rank := func(v any) int {
		switch v.(type) {
		case bool:
			return 1
		case float64:
			return 2
		case string:
			return 4
		default:
			return 3
		}
	}
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return ra - rb
	}
	switch x := a.(type) {
	case float64:
		y := b.(float64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case string:
		return strings.Compare(x, b.(string))
	}
	return strings.Compare(canon(a), canon(b))
}

func sortDocs(docs []any, pk string) {
	slices.SortFunc(docs, func(a, b any) int {
		return compareKeys(a.(map[string]any)[pk], b.(map[string]any)[pk])
	})
}

// notAvailable is the error of an operation on a table whose primary replica
// is not reachable from this node.
func notAvailable(what string) *reql.Error {
	return reql.OpFailed("Cannot perform %s: primary replica for shard [\"\", +inf) not available", what)
}

// hostedLocked returns a table this server hosts. Callers hold n.mu.
func (n *Node) hostedLocked(id, what string) (*TableMeta, *tableData, error) {
	t := n.meta.Tables[id]
	if t == nil || t.Deleted {
		return nil, nil, reql.OpFailed("Table `%s` does not exist.", id)
	}
	if n.proxy || t.Primary != n.id {
		return nil, nil, notAvailable(what)
	}
	td := n.data[id]
	if td == nil {
		td = newTableData()
		n.data[id] = td
	}
	return t, td, nil
}

func (n *Node) localGet(id string, key any) (any, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, td, err := n.hostedLocked(id, "read")
	if err != nil {
		return nil, err
	}
	return deepCopy(td.docs[keyString(key)]), nil
}

func (n *Node) localScan(id string) ([]any, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, td, err := n.hostedLocked(id, "read")
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(td.docs))
	for _, d := range td.docs {
		out = append(out, deepCopy(d))
	}
	sortDocs(out, t.PrimaryKey)
	return out, nil
}

func (n *Node) localInsert(id string, docs []map[string]any, conflict string) (reql.WriteSummary, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var s reql.WriteSummary
	t, td, err := n.hostedLocked(id, "write")
	if err != nil {
		return s, err
	}
	fail := func(msg string) {
		s.Errors++
		if s.FirstError == "" {
			s.FirstError = msg
		}
	}
	for _, d := range docs {
		k, ok := d[t.PrimaryKey]
		if !ok {
			fail("Inserted object must have primary key `" + t.PrimaryKey + "`:\n" + pretty(d))
			continue
		}
		ks := keyString(k)
		old, exists := td.docs[ks]
		var nv any = deepCopy(d)
		if exists {
			switch conflict {
			case "replace":
			case "update":
				nv = mergeDeep(deepCopy(old), nv)
			default:
				fail("Duplicate primary key `" + t.PrimaryKey + "`:\n" + pretty(old) + "\n" + pretty(d))
				continue
			}
			if canon(old) == canon(nv) {
				s.Unchanged++
			} else {
				s.Replaced++
			}
		} else {
			s.Inserted++
		}
		td.docs[ks] = nv
		s.Changes = append(s.Changes, map[string]any{"old_val": deepCopy(old), "new_val": deepCopy(nv)})
	}
	n.dataChangedLocked(t, td)
	return s, nil
}

// localCAS replaces the document at key with nv if it still is old (nil:
// absent); nv nil deletes it.
func (n *Node) localCAS(id string, key, old, nv any) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, td, err := n.hostedLocked(id, "write")
	if err != nil {
		return false, err
	}
	ks := keyString(key)
	cur := td.docs[ks]
	if canon(cur) != canon(old) {
		return false, nil
	}
	if nv == nil {
		delete(td.docs, ks)
	} else {
		td.docs[ks] = deepCopy(nv)
	}
	n.dataChangedLocked(t, td)
	return true, nil
}

// dataChangedLocked persists a hosted table and tells peers (changefeeds).
func (n *Node) dataChangedLocked(t *TableMeta, td *tableData) {
	docs := make([]any, 0, len(td.docs))
	for _, d := range td.docs {
		docs = append(docs, d)
	}
	sortDocs(docs, t.PrimaryKey)
	if err := saveTable(n.cfg.Directory, t.ID, docs); err != nil {
		n.logf("error: could not write table %s: %v", t.ID, err)
	}
	b := encode(&frame{T: "data", Table: t.ID})
	for _, pc := range n.conns {
		pc.send(b)
	}
	n.changedLocked()
}

func pretty(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "\t")
	_ = enc.Encode(v)
	return strings.TrimRight(buf.String(), "\n")
}

// deepCopy copies a JSON datum so that callers never share maps with the
// store.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	default:
		return v
	}
}

// mergeDeep merges src into dst the way update does: objects recursively,
// everything else replaced.
func mergeDeep(dst, src any) any {
	dm, ok1 := dst.(map[string]any)
	sm, ok2 := src.(map[string]any)
	if !ok1 || !ok2 {
		return src
	}
	if _, isTime := sm["$reql_type$"]; isTime {
		return src
	}
	for k, v := range sm {
		dm[k] = mergeDeep(dm[k], v)
	}
	return dm
}
