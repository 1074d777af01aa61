package node

import (
	"slices"
)

// Version orders the writes of one metadata object across the cluster: a
// Lamport clock, ties broken by the writer's id. The highest version wins a
// merge, so every connected node converges to the same object.
type Version struct {
	C uint64 `json:"c"`
	W string `json:"w"`
}

func (v Version) less(o Version) bool {
	if v.C != o.C {
		return v.C < o.C
	}
	return v.W < o.W
}

// DBMeta is one database. Deleted objects stay as tombstones so that a drop
// wins over an older copy that a peer still holds.
type DBMeta struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Deleted bool    `json:"deleted,omitempty"`
	V       Version `json:"v"`
}

// TableMeta is one table; Primary is the id of the server holding its data.
type TableMeta struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	DB         string  `json:"db"`
	PrimaryKey string  `json:"primary_key"`
	Primary    string  `json:"primary"`
	Deleted    bool    `json:"deleted,omitempty"`
	V          Version `json:"v"`
}

// ServerMeta is a server's configuration (server_config). Servers are never
// deleted from metadata: a disconnected server simply is not shown.
type ServerMeta struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Tags  []string `json:"tags"`
	Cache *float64 `json:"cache_size_mb,omitempty"` // nil: "auto"
	V     Version  `json:"v"`
}

// PasswordMeta is the admin user's password ("" for none).
type PasswordMeta struct {
	Password string  `json:"password"`
	V        Version `json:"v"`
}

// Meta is the cluster metadata one node holds: a semilattice whose merge
// keeps, per object, the copy with the highest version.
type Meta struct {
	Clock    uint64                 `json:"clock"`
	DBs      map[string]*DBMeta     `json:"dbs"`
	Tables   map[string]*TableMeta  `json:"tables"`
	Servers  map[string]*ServerMeta `json:"servers"`
	Password PasswordMeta           `json:"password"`
}

func newMeta() *Meta {
	return &Meta{DBs: map[string]*DBMeta{}, Tables: map[string]*TableMeta{}, Servers: map[string]*ServerMeta{}}
}

// normalize makes maps non-nil after decoding.
func (m *Meta) normalize() {
	if m.DBs == nil {
		m.DBs = map[string]*DBMeta{}
	}
	if m.Tables == nil {
		m.Tables = map[string]*TableMeta{}
	}
	if m.Servers == nil {
		m.Servers = map[string]*ServerMeta{}
	}
}

// tick returns a fresh version for a local write by writer.
func (m *Meta) tick(writer string) Version {
	m.Clock++
	return Version{C: m.Clock, W: writer}
}

// merge folds o into m. changed reports whether m changed; behind reports
// whether o lacks something m has (so its sender should get m back).
func (m *Meta) merge(o *Meta) (changed, behind bool) {
	if o.Clock > m.Clock {
		m.Clock = o.Clock
	}
	c, b := mergeMap(m.DBs, o.DBs, func(x *DBMeta) Version { return x.V })
	changed, behind = changed || c, behind || b
	c, b = mergeMap(m.Tables, o.Tables, func(x *TableMeta) Version { return x.V })
	changed, behind = changed || c, behind || b
	c, b = mergeMap(m.Servers, o.Servers, func(x *ServerMeta) Version { return x.V })
	changed, behind = changed || c, behind || b
	switch {
	case m.Password.V.less(o.Password.V):
		m.Password = o.Password
		changed = true
	case o.Password.V.less(m.Password.V):
		behind = true
	}
	return changed, behind
}

func mergeMap[T any](dst, src map[string]*T, ver func(*T) Version) (changed, behind bool) {
	for k, sv := range src {
		dv, ok := dst[k]
		switch {
		case !ok || ver(dv).less(ver(sv)):
			cp := *sv
			dst[k] = &cp
			changed = true
		case ver(sv).less(ver(dv)):
			behind = true
		}
	}
	for k := range dst {
		if _, ok := src[k]; !ok {
			behind = true
		}
	}
	return changed, behind
}

// liveDBs returns the databases that are not dropped.
func (m *Meta) liveDBs() []*DBMeta {
	var out []*DBMeta
	for _, d := range m.DBs {
		if !d.Deleted {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b *DBMeta) int {
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out
}

// liveTables returns the tables that are not dropped and whose database
// exists, sorted by id.
func (m *Meta) liveTables() []*TableMeta {
	var out []*TableMeta
	for _, t := range m.Tables {
		if t.Deleted {
			continue
		}
		if d, ok := m.DBs[t.DB]; !ok || d.Deleted {
			continue
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *TableMeta) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

func (m *Meta) clone() *Meta {
	c := newMeta()
	c.Clock = m.Clock
	for k, v := range m.DBs {
		cp := *v
		c.DBs[k] = &cp
	}
	for k, v := range m.Tables {
		cp := *v
		c.Tables[k] = &cp
	}
	for k, v := range m.Servers {
		cp := *v
		cp.Tags = slices.Clone(v.Tags)
		c.Servers[k] = &cp
	}
	c.Password = m.Password
	return c
}
