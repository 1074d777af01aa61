package rethink

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// The decoders below are pure functions over the rows a query returned (as
// rethinkdb-go or encoding/json produce them), so they can be tested against
// recorded tables without a server. Any unexpected shape is an error naming
// the table, the row and the field; they never panic.

// fieldErr names where a reply did not have the expected shape.
type fieldErr struct {
	table, row, field, want string
	got                     any
}

func (e *fieldErr) Error() string {
	if e.got == nil {
		return fmt.Sprintf("rethinkdb.%s row %s: field %q: missing or null, want %s", e.table, e.row, e.field, e.want)
	}
	return fmt.Sprintf("rethinkdb.%s row %s: field %q: got %T, want %s", e.table, e.row, e.field, e.got, e.want)
}

// rowReader extracts typed fields from one row and remembers the first error.
type rowReader struct {
	table string
	row   string // id when known, else the index
	m     map[string]any
	err   error
}

func newRowReader(table string, i int, m map[string]any) *rowReader {
	r := &rowReader{table: table, row: fmt.Sprintf("#%d", i), m: m}
	if id, ok := m["id"].(string); ok && id != "" {
		r.row = id
	}
	return r
}

func (r *rowReader) fail(field, want string, got any) {
	if r.err == nil {
		r.err = &fieldErr{table: r.table, row: r.row, field: field, want: want, got: got}
	}
}

// lookup follows a dotted path; ok is false when a step is missing.
func (r *rowReader) lookup(path string) (any, bool) {
	var cur any = r.m
	for _, p := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = obj[p]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func (r *rowReader) str(path string) string {
	v, _ := r.lookup(path)
	s, ok := v.(string)
	if !ok {
		r.fail(path, "string", v)
	}
	return s
}

// optStr returns "" when the field is absent or null.
func (r *rowReader) optStr(path string) string {
	v, ok := r.lookup(path)
	if !ok || v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		r.fail(path, "string", v)
	}
	return s
}

func (r *rowReader) boolean(path string) bool {
	v, _ := r.lookup(path)
	b, ok := v.(bool)
	if !ok {
		r.fail(path, "bool", v)
	}
	return b
}

func (r *rowReader) integer(path string) int {
	v, _ := r.lookup(path)
	n, ok := toInt(v)
	if !ok {
		r.fail(path, "integer", v)
	}
	return n
}

func (r *rowReader) object(path string) map[string]any {
	v, _ := r.lookup(path)
	m, ok := v.(map[string]any)
	if !ok {
		r.fail(path, "object", v)
	}
	return m
}

func (r *rowReader) optObject(path string) map[string]any {
	v, ok := r.lookup(path)
	if !ok || v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		r.fail(path, "object", v)
	}
	return m
}

func (r *rowReader) array(path string) []any {
	v, _ := r.lookup(path)
	a, ok := v.([]any)
	if !ok {
		r.fail(path, "array", v)
	}
	return a
}

func (r *rowReader) strings(path string, optional bool) []string {
	v, ok := r.lookup(path)
	if optional && (!ok || v == nil) {
		return nil
	}
	a, ok := v.([]any)
	if !ok {
		r.fail(path, "array of strings", v)
		return nil
	}
	out := make([]string, 0, len(a))
	for i, e := range a {
		s, ok := e.(string)
		if !ok {
			r.fail(fmt.Sprintf("%s[%d]", path, i), "string", e)
			return nil
		}
		out = append(out, s)
	}
	return out
}

func (r *rowReader) time(path string) time.Time {
	v, _ := r.lookup(path)
	t, ok := toTime(v)
	if !ok {
		r.fail(path, "time", v)
	}
	return t
}

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case float64:
		if n != math.Trunc(n) || math.Abs(n) > math.MaxInt32 {
			return 0, false
		}
		return int(n), true
	case int:
		return n, true
	case int64:
		return int(n), true
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// toTime accepts the driver's native time.Time and the raw pseudo-type
// {"$reql_type$":"TIME","epoch_time":…,"timezone":…} (time_format "raw").
func toTime(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t, true
	case map[string]any:
		if t["$reql_type$"] != "TIME" {
			return time.Time{}, false
		}
		f, ok := toFloat(t["epoch_time"])
		if !ok {
			return time.Time{}, false
		}
		sec, frac := math.Modf(f)
		// Round to milliseconds: the server keeps milliseconds and the
		// float cannot hold more exactly.
		ms := math.Round(frac * 1000)
		return time.Unix(int64(sec), int64(ms)*int64(time.Millisecond)).UTC(), true
	}
	return time.Time{}, false
}

// DecodeServers joins server_status rows with server_config rows (for tags)
// by id. A server in server_status without a server_config row gets no tags.
func DecodeServers(status, config []map[string]any) ([]Server, error) {
	tags := make(map[string][]string, len(config))
	for i, row := range config {
		r := newRowReader("server_config", i, row)
		id := r.str("id")
		t := r.strings("tags", false)
		if r.err != nil {
			return nil, r.err
		}
		tags[id] = t
	}
	out := make([]Server, 0, len(status))
	for i, row := range status {
		s, err := decodeServerStatus(i, row)
		if err != nil {
			return nil, err
		}
		s.Tags = tags[s.ID]
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func decodeServerStatus(i int, row map[string]any) (Server, error) {
	r := newRowReader("server_status", i, row)
	s := Server{
		ID:          r.str("id"),
		Name:        r.str("name"),
		Hostname:    r.str("network.hostname"),
		ClusterPort: r.integer("network.cluster_port"),
		DriverPort:  r.integer("network.reql_port"),
		TimeStarted: r.time("process.time_started"),
	}
	for j, a := range r.array("network.canonical_addresses") {
		m, ok := a.(map[string]any)
		if !ok {
			r.fail(fmt.Sprintf("network.canonical_addresses[%d]", j), "object", a)
			break
		}
		ar := &rowReader{table: r.table, row: r.row, m: m}
		addr := Addr{Host: ar.str("host"), Port: ar.integer("port")}
		if ar.err != nil {
			r.fail(fmt.Sprintf("network.canonical_addresses[%d].%s", j, ar.err.(*fieldErr).field), ar.err.(*fieldErr).want, ar.err.(*fieldErr).got)
			break
		}
		s.CanonicalAddresses = append(s.CanonicalAddresses, addr)
	}
	// connected_to maps every server the cluster knows of to whether this
	// one is connected to it (server_status.cc: is_connected). A false entry
	// is a server it has not connected to yet, e.g. while a proxy is still
	// meshing the merged cluster: it must not count as connected.
	for k, c := range r.object("network.connected_to") {
		connected, ok := c.(bool)
		if !ok {
			r.fail("network.connected_to."+k, "bool", c)
			break
		}
		if connected {
			s.ConnectedTo = append(s.ConnectedTo, k)
		}
	}
	sort.Strings(s.ConnectedTo)
	if r.err != nil {
		return Server{}, r.err
	}
	return s, nil
}

// DecodeIssues decodes current_issues rows.
func DecodeIssues(rows []map[string]any) ([]Issue, error) {
	out := make([]Issue, 0, len(rows))
	for i, row := range rows {
		r := newRowReader("current_issues", i, row)
		is := Issue{
			ID:          r.str("id"),
			Type:        r.str("type"),
			Critical:    r.boolean("critical"),
			Description: r.str("description"),
			Raw:         row,
		}
		if r.optObject("info") != nil {
			is.Name = r.optStr("info.name")
			if is.Name == "" {
				is.Name = r.optStr("info.table")
			}
			is.IDs = r.strings("info.ids", true)
			is.DB = r.optStr("info.db")
		}
		if r.err != nil {
			return nil, r.err
		}
		out = append(out, is)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Type != out[j].Type {
			return out[i].Type < out[j].Type
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// DecodeDBs decodes db_config rows.
func DecodeDBs(rows []map[string]any) ([]DB, error) {
	out := make([]DB, 0, len(rows))
	for i, row := range rows {
		r := newRowReader("db_config", i, row)
		d := DB{ID: r.str("id"), Name: r.str("name")}
		if r.err != nil {
			return nil, r.err
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// DecodeTables decodes table_config rows read with identifier_format
// "uuid" (so "db" is the database's id) and names each table's database from
// dbs.
func DecodeTables(rows []map[string]any, dbs []DB) ([]Table, error) {
	names := make(map[string]string, len(dbs))
	for _, d := range dbs {
		names[d.ID] = d.Name
	}
	out := make([]Table, 0, len(rows))
	for i, row := range rows {
		r := newRowReader("table_config", i, row)
		t := Table{
			ID:    r.str("id"),
			Name:  r.str("name"),
			DBID:  r.str("db"),
			Error: r.optStr("error"),
		}
		if r.err != nil {
			return nil, r.err
		}
		t.DBName = names[t.DBID]
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.DBName != b.DBName {
			return a.DBName < b.DBName
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.ID < b.ID
	})
	return out, nil
}

// errSelfMissing: the connected server has no server_status row.
var errSelfMissing = errors.New("not a server in server_status")

// Rows holds the raw contents of the system tables a View is built from.
type Rows struct {
	ServerStatus  []map[string]any
	ServerConfig  []map[string]any
	CurrentIssues []map[string]any
	DBConfig      []map[string]any
	TableConfig   []map[string]any // read with identifier_format "uuid"
}

// BuildView decodes rows as seen from the server selfID.
func BuildView(selfID string, rows Rows) (View, error) {
	var v View
	var err error
	if v.Servers, err = DecodeServers(rows.ServerStatus, rows.ServerConfig); err != nil {
		return View{}, err
	}
	if v.Issues, err = DecodeIssues(rows.CurrentIssues); err != nil {
		return View{}, err
	}
	if v.DBs, err = DecodeDBs(rows.DBConfig); err != nil {
		return View{}, err
	}
	if v.Tables, err = DecodeTables(rows.TableConfig, v.DBs); err != nil {
		return View{}, err
	}
	self, ok := v.Server(selfID)
	if !ok {
		return View{}, fmt.Errorf("rethinkdb.server_status has no row for the connected server %s: %w", selfID, errSelfMissing)
	}
	v.Self = self
	v.Proxies = proxies(v.Servers)
	return v, nil
}

// proxies collects the "proxy-<uuid>" keys of every connected_to. A proxy is
// never a row of server_status; this is the only place it shows.
func proxies(servers []Server) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range servers {
		for _, k := range s.ConnectedTo {
			if strings.HasPrefix(k, "proxy-") && !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}
