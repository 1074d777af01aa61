package node

import (
	"context"
	"slices"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

// Backend returns the node's reql.Backend: the cluster as this node sees it.
func (n *Node) Backend() reql.Backend { return (*backend)(n) }

type backend Node

var _ reql.Backend = (*backend)(nil)

func (b *backend) node() *Node { return (*Node)(b) }

// resolveDBLocked finds the live database called name. Callers hold n.mu.
func (n *Node) resolveDBLocked(name string) (*DBMeta, error) {
	var found []*DBMeta
	for _, d := range n.meta.liveDBs() {
		if d.Name == name {
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

func (n *Node) resolveTableLocked(db, name string) (*DBMeta, *TableMeta, error) {
	d, err := n.resolveDBLocked(db)
	if err != nil {
		return nil, nil, err
	}
	var found []*TableMeta
	for _, t := range n.meta.liveTables() {
		if t.DB == d.ID && t.Name == name {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return nil, nil, reql.OpFailed("Table `%s.%s` does not exist.", db, name)
	case 1:
		return d, found[0], nil
	}
	return nil, nil, reql.OpFailed("Table `%s.%s` is ambiguous; there are multiple tables with that name.", db, name)
}

func (b *backend) DBs(ctx context.Context) ([]reql.DBInfo, error) {
	n := b.node()
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []reql.DBInfo
	for _, d := range n.meta.liveDBs() {
		out = append(out, reql.DBInfo{ID: d.ID, Name: d.Name})
	}
	return out, nil
}

func (b *backend) DBCreate(ctx context.Context, name string) (map[string]any, error) {
	n := b.node()
	if !validDBName(name) {
		return nil, reql.QueryLogic("Database name `%s` invalid (Use A-Z, a-z, 0-9, _ and - only).", name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.checkDBNameFreeLocked(name, ""); err != nil {
		return nil, err
	}
	id := newUUID()
	n.meta.DBs[id] = &DBMeta{ID: id, Name: name, V: n.meta.tick(n.id)}
	n.metaChangedLocked(nil)
	return map[string]any{"id": id, "name": name}, nil
}

func (n *Node) checkDBNameFreeLocked(name, except string) error {
	if name == "rethinkdb" {
		return reql.OpFailed("Database `%s` already exists.", name)
	}
	for _, d := range n.meta.liveDBs() {
		if d.Name == name && d.ID != except {
			return reql.OpFailed("Database `%s` already exists.", name)
		}
	}
	return nil
}

func (b *backend) DBDrop(ctx context.Context, name string) (map[string]any, int, error) {
	n := b.node()
	if name == "rethinkdb" {
		return nil, 0, reql.OpFailed("Database `rethinkdb` is special; you can't delete it.")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	d, err := n.resolveDBLocked(name)
	if err != nil {
		return nil, 0, err
	}
	tables := n.dropDBLocked(d)
	return map[string]any{"id": d.ID, "name": d.Name}, tables, nil
}

// dropDBLocked tombstones a database and its tables.
func (n *Node) dropDBLocked(d *DBMeta) int {
	count := 0
	for _, t := range n.meta.liveTables() {
		if t.DB == d.ID {
			n.meta.Tables[t.ID] = &TableMeta{ID: t.ID, Name: t.Name, DB: t.DB, PrimaryKey: t.PrimaryKey, Primary: t.Primary, Deleted: true, V: n.meta.tick(n.id)}
			count++
		}
	}
	n.meta.DBs[d.ID] = &DBMeta{ID: d.ID, Name: d.Name, Deleted: true, V: n.meta.tick(n.id)}
	n.metaChangedLocked(nil)
	return count
}

func (b *backend) TableList(ctx context.Context, db string) ([]string, error) {
	n := b.node()
	if db == "rethinkdb" {
		return slices.Clone(systemTables), nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	d, err := n.resolveDBLocked(db)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range n.meta.liveTables() {
		if t.DB == d.ID {
			out = append(out, t.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (b *backend) TableCreate(ctx context.Context, db, name string, opts reql.TableCreateOpts) (map[string]any, error) {
	n := b.node()
	if db == "rethinkdb" {
		return nil, reql.OpFailed("Database `rethinkdb` is special; you can't create new tables in it.")
	}
	if !validDBName(name) {
		return nil, reql.QueryLogic("Table name `%s` invalid (Use A-Z, a-z, 0-9, _ and - only).", name)
	}
	pk := opts.PrimaryKey
	if pk == "" {
		pk = "id"
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	d, err := n.resolveDBLocked(db)
	if err != nil {
		return nil, err
	}
	for _, t := range n.meta.liveTables() {
		if t.DB == d.ID && t.Name == name {
			return nil, reql.OpFailed("Table `%s.%s` already exists.", db, name)
		}
	}
	primary, err := n.pickPrimaryLocked()
	if err != nil {
		return nil, err
	}
	id := newUUID()
	t := &TableMeta{ID: id, Name: name, DB: d.ID, PrimaryKey: pk, Primary: primary, V: n.meta.tick(n.id)}
	n.meta.Tables[id] = t
	if primary == n.id {
		n.data[id] = newTableData()
		n.dataChangedLocked(t, n.data[id])
	}
	n.metaChangedLocked(nil)
	return n.tableConfigRowLocked(t, false), nil
}

// pickPrimaryLocked chooses the server for a new table: this server, or for
// a proxy the connected server with the smallest name (the recordings show a
// proxy placing a table on server_1).
func (n *Node) pickPrimaryLocked() (string, error) {
	if !n.proxy {
		return n.id, nil
	}
	best := ""
	for id, pc := range n.conns {
		if pc.info.Proxy {
			continue
		}
		if best == "" || n.nameOfLocked(id) < n.nameOfLocked(best) ||
			n.nameOfLocked(id) == n.nameOfLocked(best) && id < best {
			best = id
		}
	}
	if best == "" {
		return "", reql.OpFailed("Can't create a table because no servers are reachable.")
	}
	return best, nil
}

func (b *backend) TableDrop(ctx context.Context, db, name string) (map[string]any, error) {
	n := b.node()
	if db == "rethinkdb" {
		return nil, reql.OpFailed("Database `rethinkdb` is special; you can't delete tables from it.")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	_, t, err := n.resolveTableLocked(db, name)
	if err != nil {
		return nil, err
	}
	row := n.tableConfigRowLocked(t, false)
	n.meta.Tables[t.ID] = &TableMeta{ID: t.ID, Name: t.Name, DB: t.DB, PrimaryKey: t.PrimaryKey, Primary: t.Primary, Deleted: true, V: n.meta.tick(n.id)}
	n.metaChangedLocked(nil)
	return row, nil
}

func (b *backend) Table(ctx context.Context, db, name string, opts reql.TableOpts) (reql.Table, error) {
	n := b.node()
	uuid := opts.IdentifierFormat == "uuid"
	if db == "rethinkdb" {
		if !slices.Contains(systemTables, name) {
			return nil, reql.OpFailed("Table `rethinkdb.%s` does not exist.", name)
		}
		return &sysTable{n: n, name: name, uuid: uuid}, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	_, t, err := n.resolveTableLocked(db, name)
	if err != nil {
		return nil, err
	}
	return &userTable{n: n, id: t.ID, db: db, name: name, pk: t.PrimaryKey}, nil
}

func (b *backend) ServerInfo(ctx context.Context) (map[string]any, error) {
	n := b.node()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proxy {
		return map[string]any{"id": n.id, "name": "proxy-" + n.id, "proxy": true}, nil
	}
	return map[string]any{"id": n.id, "name": n.nameOfLocked(n.id), "proxy": false}, nil
}
