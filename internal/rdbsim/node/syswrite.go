package node

import (
	"context"
	"fmt"
	"slices"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

// sysTable is a table of the `rethinkdb` database, computed from the node's
// state on every read.
type sysTable struct {
	n    *Node
	name string
	uuid bool
}

var _ reql.Table = (*sysTable)(nil)

func (t *sysTable) DB() string         { return "rethinkdb" }
func (t *sysTable) Name() string       { return t.name }
func (t *sysTable) PrimaryKey() string { return "id" }

func (t *sysTable) rows() []any {
	t.n.mu.Lock()
	defer t.n.mu.Unlock()
	rs := t.n.sysRowsLocked(t.name, t.uuid)
	out := make([]any, len(rs))
	for i, r := range rs {
		out[i] = r
	}
	return out
}

func (t *sysTable) Get(ctx context.Context, key any) (any, error) {
	k := canon(key)
	for _, r := range t.rows() {
		if canon(r.(map[string]any)["id"]) == k {
			return r, nil
		}
	}
	return nil, nil
}

func (t *sysTable) Scan(ctx context.Context) ([]any, error) { return t.rows(), nil }

func (t *sysTable) Changes(ctx context.Context, includeInitial bool) (reql.Stream, error) {
	return newFeed(ctx, t.n, "id", includeInitial, func(ctx context.Context) ([]any, error) {
		return t.rows(), nil
	})
}

func (t *sysTable) Insert(ctx context.Context, docs []map[string]any, conflict string) (reql.WriteSummary, error) {
	var s reql.WriteSummary
	for _, d := range docs {
		key, ok := d["id"]
		if !ok {
			addErr(&s, "Inserted object must have primary key `id`:\n"+pretty(d))
			continue
		}
		doc := d
		one, err := t.Modify(ctx, key, func(old any) (any, error) {
			if old == nil {
				return doc, nil
			}
			switch conflict {
			case "replace":
				return doc, nil
			case "update":
				return mergeDeep(deepCopy(old), deepCopy(doc)), nil
			}
			return nil, errDuplicate{old: old, doc: doc}
		})
		if de, ok := err.(errDuplicate); ok {
			addErr(&s, "Duplicate primary key `id`:\n"+pretty(de.old)+"\n"+pretty(de.doc))
			continue
		}
		if err != nil {
			return s, err
		}
		s.Inserted += one.Inserted
		s.Replaced += one.Replaced
		s.Unchanged += one.Unchanged
		s.Deleted += one.Deleted
		s.Skipped += one.Skipped
		s.Changes = append(s.Changes, one.Changes...)
		if one.Errors > 0 {
			addErr(&s, one.FirstError)
		}
	}
	return s, nil
}

type errDuplicate struct{ old, doc any }

func (errDuplicate) Error() string { return "duplicate primary key" }

func addErr(s *reql.WriteSummary, msg string) {
	s.Errors++
	if s.FirstError == "" {
		s.FirstError = msg
	}
}

// Modify computes f on the current row without holding any lock, then
// validates and applies the change under the node's lock.
func (t *sysTable) Modify(ctx context.Context, key any, f func(old any) (any, error)) (reql.WriteSummary, error) {
	var s reql.WriteSummary
	old, _ := t.Get(ctx, key)
	nv, err := f(deepCopy(old))
	if err != nil {
		return s, err
	}
	if canon(old) == canon(nv) {
		if old == nil {
			s.Skipped = 1
		} else {
			s.Unchanged = 1
		}
		return s, nil
	}
	if msg := checkNewDoc("id", key, old, nv); msg != "" {
		addErr(&s, msg)
		return s, nil
	}
	var om, nm map[string]any
	if old != nil {
		om = old.(map[string]any)
	}
	if nv != nil {
		nm = nv.(map[string]any)
	}
	n := t.n
	n.mu.Lock()
	msg := n.applySysWriteLocked(t.name, t.uuid, key, om, nm)
	n.mu.Unlock()
	if msg != "" {
		addErr(&s, msg)
		return s, nil
	}
	countChange(&s, old, nv)
	return s, nil
}

func wrongFormat(table, msg string) string {
	return fmt.Sprintf("The change you're trying to make to `rethinkdb.%s` has the wrong format. %s", table, msg)
}

// applySysWriteLocked applies one row change to a system table and returns
// the error message of a refused change ("" when applied). Callers hold n.mu.
func (n *Node) applySysWriteLocked(table string, uuid bool, key any, old, nv map[string]any) string {
	switch table {
	case "server_config":
		return n.writeServerConfigLocked(old, nv)
	case "db_config":
		return n.writeDBConfigLocked(key, old, nv)
	case "table_config":
		return n.writeTableConfigLocked(old, nv, uuid)
	case "users":
		return n.writeUsersLocked(old, nv)
	case "cluster_config":
		if old == nil || nv == nil {
			return "It's illegal to insert or delete rows in the `rethinkdb.cluster_config` table."
		}
		return "" // accepted and ignored: the sim has no heartbeat to tune
	}
	return fmt.Sprintf("It's illegal to write to the `rethinkdb.%s` table.", table)
}

func (n *Node) writeServerConfigLocked(old, nv map[string]any) string {
	switch {
	case old == nil:
		return "It's illegal to insert new rows into the `rethinkdb.server_config` table."
	case nv == nil:
		return "It's illegal to delete rows from the `rethinkdb.server_config` table. A server is removed by shutting it down."
	}
	id, _ := old["id"].(string)
	s := n.meta.Servers[id]
	if s == nil {
		return fmt.Sprintf("Server `%s` is not connected.", id)
	}
	for k := range nv {
		if k != "id" && k != "name" && k != "tags" && k != "cache_size_mb" {
			return wrongFormat("server_config", fmt.Sprintf("Unexpected key(s) `%s`.", k))
		}
	}
	name, ok := nv["name"].(string)
	if !ok {
		return wrongFormat("server_config", "In `name`: Expected a string; got "+pretty(nv["name"])+".")
	}
	if !validServerName(name) {
		return wrongFormat("server_config", fmt.Sprintf("In `name`: Server name `%s` invalid (Use A-Z, a-z, 0-9, and _ only).", name))
	}
	var tags []string
	ta, ok := nv["tags"].([]any)
	if !ok {
		return wrongFormat("server_config", "In `tags`: Expected an array; got "+pretty(nv["tags"])+".")
	}
	for _, x := range ta {
		tag, ok := x.(string)
		if !ok || !validServerName(tag) {
			return wrongFormat("server_config", "In `tags`: "+pretty(x)+" is not a valid server tag.")
		}
		if !slices.Contains(tags, tag) {
			tags = append(tags, tag)
		}
	}
	var cache *float64
	switch c := nv["cache_size_mb"].(type) {
	case string:
		if c != "auto" {
			return wrongFormat("server_config", "In `cache_size_mb`: Expected a number or \"auto\".")
		}
	case float64:
		if c < 0 {
			return wrongFormat("server_config", "In `cache_size_mb`: Expected a non-negative number.")
		}
		cache = &c
	default:
		return wrongFormat("server_config", "In `cache_size_mb`: Expected a number or \"auto\".")
	}
	if name != s.Name {
		for _, v := range n.visibleServersLocked() {
			if v.id != id && n.nameOfLocked(v.id) == name {
				return fmt.Sprintf("Cannot rename server `%s` to `%s` because server `%s` already exists.", s.Name, name, name)
			}
		}
	}
	n.meta.Servers[id] = &ServerMeta{ID: id, Name: name, Tags: tags, Cache: cache, V: n.meta.tick(n.id)}
	n.metaChangedLocked(nil)
	return ""
}

func (n *Node) writeDBConfigLocked(key any, old, nv map[string]any) string {
	if nv == nil {
		id, _ := old["id"].(string)
		if d := n.meta.DBs[id]; d != nil && !d.Deleted {
			n.dropDBLocked(d)
		}
		return ""
	}
	for k := range nv {
		if k != "id" && k != "name" {
			return wrongFormat("db_config", fmt.Sprintf("Unexpected key(s) `%s`.", k))
		}
	}
	id, ok := key.(string)
	if !ok || !isUUID(id) {
		return wrongFormat("db_config", "In `id`: Expected a UUID; got "+pretty(key)+".")
	}
	name, ok := nv["name"].(string)
	if !ok {
		return wrongFormat("db_config", "In `name`: Expected a string; got "+pretty(nv["name"])+".")
	}
	if !validDBName(name) {
		return wrongFormat("db_config", fmt.Sprintf("In `name`: %q is not a valid db name; Use A-Z, a-z, 0-9, _ and - only", name))
	}
	if old == nil {
		if d := n.meta.DBs[id]; d != nil && d.Deleted {
			return fmt.Sprintf("Database `%s` was dropped; its id cannot be reused.", d.Name)
		}
	}
	if old == nil || old["name"] != name {
		if err := n.checkDBNameFreeLocked(name, id); err != nil {
			return err.Error()
		}
	}
	n.meta.DBs[id] = &DBMeta{ID: id, Name: name, V: n.meta.tick(n.id)}
	n.metaChangedLocked(nil)
	return ""
}

func (n *Node) writeTableConfigLocked(old, nv map[string]any, uuid bool) string {
	if old == nil {
		return "It's illegal to insert new rows into the `rethinkdb.table_config` table in rethinkdb-sim; use tableCreate."
	}
	id, _ := old["id"].(string)
	t := n.meta.Tables[id]
	if t == nil || t.Deleted {
		return fmt.Sprintf("Table `%s` does not exist.", id)
	}
	if nv == nil {
		n.meta.Tables[id] = &TableMeta{ID: t.ID, Name: t.Name, DB: t.DB, PrimaryKey: t.PrimaryKey, Primary: t.Primary, Deleted: true, V: n.meta.tick(n.id)}
		n.metaChangedLocked(nil)
		return ""
	}
	if !n.tableAvailableLocked(t) {
		return "None of the replicas for this table are accessible."
	}
	oldDB := n.dbRefLocked(t.DB, false)
	// db may be given by name or, with identifier_format uuid, by id.
	dbv, ok := nv["db"].(string)
	if !ok {
		return wrongFormat("table_config", "In `db`: Expected a string; got "+pretty(nv["db"])+".")
	}
	var db *DBMeta
	if d := n.meta.DBs[dbv]; d != nil && !d.Deleted && isUUID(dbv) {
		db = d
	} else {
		var found []*DBMeta
		for _, d := range n.meta.liveDBs() {
			if d.Name == dbv {
				found = append(found, d)
			}
		}
		switch len(found) {
		case 0:
			return wrongFormat("table_config", fmt.Sprintf("Database `%s` does not exist.", dbv))
		case 1:
			db = found[0]
		default:
			return wrongFormat("table_config", fmt.Sprintf("Database `%s` is ambiguous; there are multiple databases with that name.", dbv))
		}
	}
	name, ok := nv["name"].(string)
	if !ok {
		return wrongFormat("table_config", "In `name`: Expected a string; got "+pretty(nv["name"])+".")
	}
	if !validDBName(name) {
		return wrongFormat("table_config", fmt.Sprintf("In `name`: Table name `%s` invalid (Use A-Z, a-z, 0-9, _ and - only).", name))
	}
	if pk, ok := nv["primary_key"]; ok && pk != t.PrimaryKey {
		return wrongFormat("table_config", "It's illegal to change a table's primary key.")
	}
	if db.ID == t.DB && name == t.Name {
		return "" // other fields (shards, durability, ...) are not simulated
	}
	for _, o := range n.meta.liveTables() {
		if o.ID != t.ID && o.DB == db.ID && o.Name == name {
			return fmt.Sprintf("Can't rename table `%s.%s` to `%s.%s` because table `%s.%s` already exists.",
				oldDB, t.Name, db.Name, name, db.Name, name)
		}
	}
	n.meta.Tables[id] = &TableMeta{ID: t.ID, Name: name, DB: db.ID, PrimaryKey: t.PrimaryKey, Primary: t.Primary, V: n.meta.tick(n.id)}
	n.metaChangedLocked(nil)
	return ""
}

func (n *Node) writeUsersLocked(old, nv map[string]any) string {
	if old == nil || nv == nil || old["id"] != "admin" {
		return "rethinkdb-sim only has the `admin` user; users cannot be added or removed."
	}
	switch pw := nv["password"].(type) {
	case string:
		n.meta.Password = PasswordMeta{Password: pw, V: n.meta.tick(n.id)}
	case bool:
		if pw {
			return "" // unchanged: true only says a password is set
		}
		n.meta.Password = PasswordMeta{V: n.meta.tick(n.id)}
	default:
		return wrongFormat("users", "In `password`: Expected a string or `false`.")
	}
	n.metaChangedLocked(nil)
	return ""
}
