// Package reqltest is an in-memory reql.Backend for tests of the evaluator,
// the driver server and their users. It keeps user tables in memory and
// implements two system tables: rethinkdb.db_config (rename, drop and
// create databases by writing rows) and rethinkdb.current_issues
// (db_name_collision issues for databases that share a name).
package reqltest

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

// Backend is the fake. The zero value is not usable; call New.
type Backend struct {
	mu     sync.Mutex
	dbs    []*db
	server map[string]any
	// subscribers of db_config changes
	cfgFeeds map[*feed]struct{}
}

type db struct {
	id, name string
	tables   map[string]*Table
}

// New returns a backend with one database, `test`, like a fresh server.
func New() *Backend {
	b := &Backend{
		server:   map[string]any{"id": reql.NewUUID(), "name": "fake", "proxy": false},
		cfgFeeds: map[*feed]struct{}{},
	}
	b.AddDB("test")
	return b
}

// AddDB adds a database even when the name is taken, as a cluster merge
// does, and returns its id.
func (b *Backend) AddDB(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := &db{id: reql.NewUUID(), name: name, tables: map[string]*Table{}}
	b.dbs = append(b.dbs, d)
	return d.id
}

// AddTable creates a table with primary key "id" in the database with that
// id and fills it with docs.
func (b *Backend) AddTable(dbID, name string, docs ...map[string]any) *Table {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range b.dbs {
		if d.id == dbID {
			t := newTable(d.name, name, "id")
			for _, doc := range docs {
				t.rows[keyOf(doc["id"])] = normalize(doc)
			}
			d.tables[name] = t
			return t
		}
	}
	panic("reqltest: no database with id " + dbID)
}

// SetServerInfo sets the SERVER_INFO answer.
func (b *Backend) SetServerInfo(info map[string]any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.server = info
}

func (b *Backend) lookupDB(name string) (*db, error) {
	var found []*db
	for _, d := range b.dbs {
		if d.name == name {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return nil, reql.OpFailed("Database `%s` does not exist.", name)
	case 1:
		return found[0], nil
	}
	return nil, reql.OpFailed("Database `%s` is ambiguous; there are multiple databases with that name.", name)
}

// DBs implements reql.Backend.
func (b *Backend) DBs(ctx context.Context) ([]reql.DBInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]reql.DBInfo, 0, len(b.dbs))
	for _, d := range b.dbs {
		out = append(out, reql.DBInfo{ID: d.id, Name: d.name})
	}
	return out, nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// DBCreate implements reql.Backend.
func (b *Backend) DBCreate(ctx context.Context, name string) (map[string]any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if name == "rethinkdb" {
		return nil, reql.OpFailed("Database `rethinkdb` already exists.")
	}
	if !validName.MatchString(name) {
		return nil, reql.QueryLogic("Database name `%s` invalid (Use A-Z, a-z, 0-9, _ and - only).", name)
	}
	for _, d := range b.dbs {
		if d.name == name {
			return nil, reql.OpFailed("Database `%s` already exists.", name)
		}
	}
	d := &db{id: reql.NewUUID(), name: name, tables: map[string]*Table{}}
	b.dbs = append(b.dbs, d)
	row := map[string]any{"id": d.id, "name": name}
	b.notifyCfg(nil, row)
	return row, nil
}

// DBDrop implements reql.Backend.
func (b *Backend) DBDrop(ctx context.Context, name string) (map[string]any, int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.lookupDB(name)
	if err != nil {
		return nil, 0, err
	}
	b.dropLocked(d)
	return map[string]any{"id": d.id, "name": d.name}, len(d.tables), nil
}

func (b *Backend) dropLocked(d *db) {
	for i, x := range b.dbs {
		if x == d {
			b.dbs = append(b.dbs[:i], b.dbs[i+1:]...)
			break
		}
	}
	b.notifyCfg(map[string]any{"id": d.id, "name": d.name}, nil)
}

// TableList implements reql.Backend.
func (b *Backend) TableList(ctx context.Context, dbName string) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if dbName == "rethinkdb" {
		return []string{"current_issues", "db_config"}, nil
	}
	d, err := b.lookupDB(dbName)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(d.tables))
	for n := range d.tables {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func tableConfig(dbName, name, pk string) map[string]any {
	return map[string]any{"db": dbName, "name": name, "primary_key": pk, "id": reql.NewUUID(), "durability": "hard", "indexes": []any{}, "write_acks": "majority", "write_hook": nil}
}

// TableCreate implements reql.Backend.
func (b *Backend) TableCreate(ctx context.Context, dbName, name string, opts reql.TableCreateOpts) (map[string]any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if dbName == "rethinkdb" {
		return nil, reql.OpFailed("Database `rethinkdb` is special; you can't create new tables in it.")
	}
	d, err := b.lookupDB(dbName)
	if err != nil {
		return nil, err
	}
	if !validName.MatchString(name) {
		return nil, reql.QueryLogic("Table name `%s` invalid (Use A-Z, a-z, 0-9, _ and - only).", name)
	}
	if _, ok := d.tables[name]; ok {
		return nil, reql.OpFailed("Table `%s.%s` already exists.", dbName, name)
	}
	pk := opts.PrimaryKey
	if pk == "" {
		pk = "id"
	}
	d.tables[name] = newTable(dbName, name, pk)
	return tableConfig(dbName, name, pk), nil
}

// TableDrop implements reql.Backend.
func (b *Backend) TableDrop(ctx context.Context, dbName, name string) (map[string]any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.lookupDB(dbName)
	if err != nil {
		return nil, err
	}
	t, ok := d.tables[name]
	if !ok {
		return nil, reql.OpFailed("Table `%s.%s` does not exist.", dbName, name)
	}
	delete(d.tables, name)
	return tableConfig(dbName, name, t.pk), nil
}

// Table implements reql.Backend.
func (b *Backend) Table(ctx context.Context, dbName, name string, opts reql.TableOpts) (reql.Table, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if dbName == "rethinkdb" {
		switch name {
		case "db_config":
			return &dbConfig{b: b}, nil
		case "current_issues":
			return &currentIssues{b: b}, nil
		}
		return nil, reql.OpFailed("Table `rethinkdb.%s` does not exist.", name)
	}
	d, err := b.lookupDB(dbName)
	if err != nil {
		return nil, err
	}
	t, ok := d.tables[name]
	if !ok {
		return nil, reql.OpFailed("Table `%s.%s` does not exist.", dbName, name)
	}
	return t, nil
}

// ServerInfo implements reql.Backend.
func (b *Backend) ServerInfo(ctx context.Context) (map[string]any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.server, nil
}

func (b *Backend) notifyCfg(old, nv map[string]any) {
	ch := map[string]any{"old_val": anyOrNil(old), "new_val": anyOrNil(nv)}
	for f := range b.cfgFeeds {
		f.push(ch)
	}
}

func anyOrNil(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

// Table is an in-memory user table.
type Table struct {
	mu       sync.Mutex
	db, name string
	pk       string
	rows     map[string]any
	feeds    map[*feed]struct{}
}

func newTable(dbName, name, pk string) *Table {
	return &Table{db: dbName, name: name, pk: pk, rows: map[string]any{}, feeds: map[*feed]struct{}{}}
}

// keyOf is the map key of a primary key value.
func keyOf(k any) string {
	b, _ := json.Marshal(normalize(k))
	return string(b)
}

func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// DB implements reql.Table.
func (t *Table) DB() string { return t.db }

// Name implements reql.Table.
func (t *Table) Name() string { return t.name }

// PrimaryKey implements reql.Table.
func (t *Table) PrimaryKey() string { return t.pk }

// Get implements reql.Table.
func (t *Table) Get(ctx context.Context, key any) (any, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return normalize(t.rows[keyOf(key)]), nil
}

// Scan implements reql.Table; rows come in primary key order.
func (t *Table) Scan(ctx context.Context) ([]any, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.scanLocked(), nil
}

func (t *Table) scanLocked() []any {
	out := make([]any, 0, len(t.rows))
	for _, r := range t.rows {
		out = append(out, normalize(r))
	}
	sort.Slice(out, func(i, j int) bool {
		return reql.Compare(out[i].(map[string]any)[t.pk], out[j].(map[string]any)[t.pk]) < 0
	})
	return out
}

// Insert implements reql.Table.
func (t *Table) Insert(ctx context.Context, docs []map[string]any, conflict string) (reql.WriteSummary, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var s reql.WriteSummary
	for _, doc := range docs {
		nv := normalize(doc).(map[string]any)
		k := keyOf(nv[t.pk])
		old, exists := t.rows[k]
		if exists {
			switch conflict {
			case "update":
				merged := map[string]any{}
				for kk, v := range old.(map[string]any) {
					merged[kk] = v
				}
				for kk, v := range nv {
					merged[kk] = v
				}
				nv = merged
			case "replace":
			default:
				s.Errors++
				if s.FirstError == "" {
					s.FirstError = fmt.Sprintf("Duplicate primary key `%s`:\n%s\n%s", t.pk, reql.Print(old), reql.Print(nv))
				}
				continue
			}
			if reql.Equal(old, nv) {
				s.Unchanged++
				continue
			}
			s.Replaced++
		} else {
			s.Inserted++
		}
		t.rows[k] = nv
		t.notifyLocked(old, nv)
	}
	return s, nil
}

// Modify implements reql.Table. f runs without the lock held.
func (t *Table) Modify(ctx context.Context, key any, f func(old any) (any, error)) (reql.WriteSummary, error) {
	k := keyOf(key)
	t.mu.Lock()
	old := normalize(t.rows[k])
	t.mu.Unlock()
	nv, err := f(old)
	if err != nil {
		return reql.WriteSummary{}, err
	}
	nv = normalize(nv)
	t.mu.Lock()
	defer t.mu.Unlock()
	var s reql.WriteSummary
	switch {
	case old == nil && nv == nil:
		s.Skipped = 1
		return s, nil
	case reql.Equal(old, nv):
		s.Unchanged = 1
		return s, nil
	case old == nil:
		s.Inserted = 1
	case nv == nil:
		s.Deleted = 1
	default:
		s.Replaced = 1
	}
	if nv == nil {
		delete(t.rows, k)
	} else {
		t.rows[k] = nv
	}
	t.notifyLocked(old, nv)
	return s, nil
}

func (t *Table) notifyLocked(old, nv any) {
	for f := range t.feeds {
		f.push(map[string]any{"old_val": old, "new_val": nv})
	}
}

// Changes implements reql.Table.
func (t *Table) Changes(ctx context.Context, includeInitial bool) (reql.Stream, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := newFeed(func(f *feed) {
		t.mu.Lock()
		delete(t.feeds, f)
		t.mu.Unlock()
	})
	if includeInitial {
		for _, r := range t.scanLocked() {
			f.push(map[string]any{"new_val": r})
		}
	}
	t.feeds[f] = struct{}{}
	return f, nil
}

// Feeds reports how many changefeeds are open on t (to check that closing
// a cursor closes the feed).
func (t *Table) Feeds() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.feeds)
}

// feed is a changefeed stream: an unbounded queue that Next drains.
type feed struct {
	mu      sync.Mutex
	queue   []any
	ready   chan struct{} // closed and replaced when the queue grows
	closed  bool
	onClose func(*feed)
}

func newFeed(onClose func(*feed)) *feed {
	return &feed{ready: make(chan struct{}), onClose: onClose}
}

func (f *feed) push(x any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.queue = append(f.queue, x)
	close(f.ready)
	f.ready = make(chan struct{})
}

func (f *feed) Next(ctx context.Context) ([]any, bool, error) {
	for {
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return nil, false, nil
		}
		if len(f.queue) > 0 {
			b := f.queue
			f.queue = nil
			f.mu.Unlock()
			return b, true, nil
		}
		ready := f.ready
		f.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

func (f *feed) Feed() bool { return true }

func (f *feed) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	close(f.ready)
	f.ready = make(chan struct{})
	f.mu.Unlock()
	f.onClose(f)
	return nil
}

// dbConfig is rethinkdb.db_config: one row per database; writing a row
// renames, creates or drops the database.
type dbConfig struct{ b *Backend }

func (c *dbConfig) DB() string         { return "rethinkdb" }
func (c *dbConfig) Name() string       { return "db_config" }
func (c *dbConfig) PrimaryKey() string { return "id" }

func (c *dbConfig) rowsLocked() []any {
	out := make([]any, 0, len(c.b.dbs))
	for _, d := range c.b.dbs {
		out = append(out, map[string]any{"id": d.id, "name": d.name})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].(map[string]any)["id"].(string) < out[j].(map[string]any)["id"].(string)
	})
	return out
}

func (c *dbConfig) Get(ctx context.Context, key any) (any, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	for _, d := range c.b.dbs {
		if d.id == key {
			return map[string]any{"id": d.id, "name": d.name}, nil
		}
	}
	return nil, nil
}

func (c *dbConfig) Scan(ctx context.Context) ([]any, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	return c.rowsLocked(), nil
}

const wrongFormat = "The change you're trying to make to `rethinkdb.db_config` has the wrong format. "

func (c *dbConfig) Insert(ctx context.Context, docs []map[string]any, conflict string) (reql.WriteSummary, error) {
	var s reql.WriteSummary
	for _, doc := range docs {
		one, err := c.Modify(ctx, doc["id"], func(old any) (any, error) {
			if old != nil {
				return old, nil
			}
			return doc, nil
		})
		if err != nil {
			return s, err
		}
		s.Inserted += one.Inserted
		s.Errors += one.Errors
		if s.FirstError == "" {
			s.FirstError = one.FirstError
		}
	}
	return s, nil
}

func (c *dbConfig) Modify(ctx context.Context, key any, f func(old any) (any, error)) (reql.WriteSummary, error) {
	old, err := c.Get(ctx, key)
	if err != nil {
		return reql.WriteSummary{}, err
	}
	nv, err := f(old)
	if err != nil {
		return reql.WriteSummary{}, err
	}
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	fail := func(msg string) (reql.WriteSummary, error) {
		return reql.WriteSummary{Errors: 1, FirstError: msg}, nil
	}
	var d *db
	for _, x := range c.b.dbs {
		if x.id == key {
			d = x
		}
	}
	switch {
	case old == nil && nv == nil:
		return reql.WriteSummary{Skipped: 1}, nil
	case nv == nil:
		if d != nil {
			c.b.dropLocked(d)
		}
		return reql.WriteSummary{Deleted: 1}, nil
	}
	row, ok := nv.(map[string]any)
	if !ok {
		return fail(wrongFormat + "Expected an object.")
	}
	name, ok := row["name"].(string)
	if !ok || len(row) != 2 || row["id"] != key {
		return fail(wrongFormat + "Expected an object with fields `id` and `name`.")
	}
	if !validName.MatchString(name) {
		return fail(wrongFormat + fmt.Sprintf("In `name`: %q is not a valid db name; Use A-Z, a-z, 0-9, _ and - only", name))
	}
	if old != nil && old.(map[string]any)["name"] == name {
		return reql.WriteSummary{Unchanged: 1}, nil
	}
	for _, x := range c.b.dbs {
		if x.name == name {
			return fail(fmt.Sprintf("Database `%s` already exists.", name))
		}
	}
	if d == nil {
		d = &db{id: key.(string), name: name, tables: map[string]*Table{}}
		c.b.dbs = append(c.b.dbs, d)
		c.b.notifyCfg(nil, row)
		return reql.WriteSummary{Inserted: 1}, nil
	}
	d.name = name
	for _, t := range d.tables {
		t.mu.Lock()
		t.db = name
		t.mu.Unlock()
	}
	c.b.notifyCfg(old.(map[string]any), map[string]any{"id": d.id, "name": name})
	return reql.WriteSummary{Replaced: 1}, nil
}

func (c *dbConfig) Changes(ctx context.Context, includeInitial bool) (reql.Stream, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	f := newFeed(func(f *feed) {
		c.b.mu.Lock()
		delete(c.b.cfgFeeds, f)
		c.b.mu.Unlock()
	})
	if includeInitial {
		for _, r := range c.rowsLocked() {
			f.push(map[string]any{"new_val": r})
		}
	}
	c.b.cfgFeeds[f] = struct{}{}
	return f, nil
}

// currentIssues is rethinkdb.current_issues with db_name_collision issues.
type currentIssues struct{ b *Backend }

func (c *currentIssues) DB() string         { return "rethinkdb" }
func (c *currentIssues) Name() string       { return "current_issues" }
func (c *currentIssues) PrimaryKey() string { return "id" }

func (c *currentIssues) Scan(ctx context.Context) ([]any, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	byName := map[string][]string{}
	for _, d := range c.b.dbs {
		byName[d.name] = append(byName[d.name], d.id)
	}
	var out []any
	for _, name := range sortedNames(byName) {
		ids := byName[name]
		if len(ids) < 2 {
			continue
		}
		sort.Strings(ids)
		idList := make([]any, len(ids))
		for i, id := range ids {
			idList[i] = id
		}
		out = append(out, map[string]any{
			"critical": true,
			"description": fmt.Sprintf("There are multiple databases named `%s`. RethinkDB requires that every database have a unique name. "+
				"Please update the `name` field of the conflicting databases' documents in the `rethinkdb.db_config` system table.\n\n"+
				"The UUIDs of the conflicting databases are as follows: %s", name, strings.Join(ids, ", ")),
			"id":   "issue-" + name,
			"info": map[string]any{"ids": idList, "name": name},
			"type": "db_name_collision",
		})
	}
	return out, nil
}

func sortedNames(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *currentIssues) Get(ctx context.Context, key any) (any, error) {
	rows, _ := c.Scan(ctx)
	for _, r := range rows {
		if r.(map[string]any)["id"] == key {
			return r, nil
		}
	}
	return nil, nil
}

const illegal = "It's illegal to write to the `rethinkdb.current_issues` table."

func (c *currentIssues) Insert(ctx context.Context, docs []map[string]any, conflict string) (reql.WriteSummary, error) {
	return reql.WriteSummary{Errors: len(docs), FirstError: illegal}, nil
}

func (c *currentIssues) Modify(ctx context.Context, key any, f func(old any) (any, error)) (reql.WriteSummary, error) {
	return reql.WriteSummary{Errors: 1, FirstError: illegal}, nil
}

func (c *currentIssues) Changes(ctx context.Context, includeInitial bool) (reql.Stream, error) {
	return nil, reql.OpFailed("rethinkdb-sim (reqltest): changes on current_issues are not supported")
}
