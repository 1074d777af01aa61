package node

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// systemTables are the tables of the `rethinkdb` database.
var systemTables = []string{
	"cluster_config", "current_issues", "db_config", "jobs", "logs", "permissions",
	"server_config", "server_status", "stats", "table_config", "table_status", "users",
}

func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func timeDatum(t time.Time) map[string]any {
	return map[string]any{"$reql_type$": "TIME", "epoch_time": epoch(t), "timezone": "+00:00"}
}

func epochDatum(e float64) map[string]any {
	return map[string]any{"$reql_type$": "TIME", "epoch_time": e, "timezone": "+00:00"}
}

// visibleServer is a server shown in server_config/server_status: this
// server itself or a connected one.
type visibleServer struct {
	id    string
	info  nodeInfo
	since time.Time
	conns []peerAd // its connections, oldest first
}

// visibleServersLocked lists this server (unless a proxy) and the connected
// servers. Callers hold n.mu.
func (n *Node) visibleServersLocked() []visibleServer {
	var out []visibleServer
	if !n.proxy {
		self := visibleServer{id: n.id, info: *n.selfInfoLocked(), since: n.selfSince}
		for _, id := range n.connOrder {
			self.conns = append(self.conns, peerAd{ID: id, Proxy: n.conns[id].info.Proxy})
		}
		out = append(out, self)
	}
	for _, id := range n.connOrder {
		pc := n.conns[id]
		if pc.info.Proxy {
			continue
		}
		out = append(out, visibleServer{id: id, info: pc.info, since: pc.since, conns: pc.peers})
	}
	return out
}

func (n *Node) nameOfLocked(id string) string {
	if s := n.meta.Servers[id]; s != nil {
		return s.Name
	}
	return id
}

// serverRefLocked names a server in a system table row.
func (n *Node) serverRefLocked(id string, uuid bool) string {
	if uuid {
		return id
	}
	return n.nameOfLocked(id)
}

func (n *Node) dbRefLocked(id string, uuid bool) string {
	if uuid {
		return id
	}
	if d := n.meta.DBs[id]; d != nil {
		return d.Name
	}
	return id
}

// tableAvailableLocked reports whether the table's primary is reachable.
func (n *Node) tableAvailableLocked(t *TableMeta) bool {
	if !n.proxy && t.Primary == n.id {
		return true
	}
	pc := n.conns[t.Primary]
	return pc != nil && !pc.info.Proxy
}

// sysRowsLocked computes the rows of a system table. Callers hold n.mu.
func (n *Node) sysRowsLocked(table string, uuid bool) []map[string]any {
	switch table {
	case "server_config":
		return n.serverConfigRowsLocked()
	case "server_status":
		return n.serverStatusRowsLocked(uuid)
	case "db_config":
		var out []map[string]any
		for _, d := range n.meta.liveDBs() {
			out = append(out, map[string]any{"id": d.ID, "name": d.Name})
		}
		return out
	case "table_config":
		var out []map[string]any
		for _, t := range n.meta.liveTables() {
			out = append(out, n.tableConfigRowLocked(t, uuid))
		}
		return out
	case "table_status":
		var out []map[string]any
		for _, t := range n.meta.liveTables() {
			out = append(out, n.tableStatusRowLocked(t, uuid))
		}
		return out
	case "current_issues":
		return n.issuesLocked()
	case "cluster_config":
		return []map[string]any{{"heartbeat_timeout_secs": 10.0, "id": "heartbeat"}}
	case "users":
		var pw any = false
		if n.meta.Password.Password != "" {
			pw = true
		}
		return []map[string]any{{"id": "admin", "password": pw}}
	}
	return nil // jobs, logs, permissions, stats: always empty in the sim
}

func (n *Node) serverConfigRowsLocked() []map[string]any {
	var out []map[string]any
	for _, v := range n.visibleServersLocked() {
		s := n.meta.Servers[v.id]
		row := map[string]any{"id": v.id, "name": v.info.Name, "cache_size_mb": "auto", "tags": []any{"default"}}
		if s != nil {
			row["name"] = s.Name
			var tags []any
			for _, t := range s.Tags {
				tags = append(tags, t)
			}
			if tags == nil {
				tags = []any{}
			}
			row["tags"] = tags
			if s.Cache != nil {
				row["cache_size_mb"] = *s.Cache
			}
		}
		out = append(out, row)
	}
	return out
}

func (n *Node) serverStatusRowsLocked(uuid bool) []map[string]any {
	var out []map[string]any
	for _, v := range n.visibleServersLocked() {
		connected := map[string]any{}
		for _, c := range v.conns {
			key := "proxy-" + c.ID
			if !c.Proxy {
				key = n.serverRefLocked(c.ID, uuid)
				if _, dup := connected[key]; dup {
					key += "__conflict__" + strings.ReplaceAll(c.ID, "-", "_")
				}
			}
			connected[key] = true
		}
		var addrs []any
		for _, a := range v.info.Canonical {
			addrs = append(addrs, map[string]any{"host": a.Host, "port": float64(a.Port)})
		}
		if addrs == nil {
			addrs = []any{}
		}
		var httpPort any = float64(v.info.HTTPPort)
		if v.info.NoHTTP {
			httpPort = "<no http admin>"
		}
		var argv []any
		for _, a := range v.info.Argv {
			argv = append(argv, a)
		}
		if argv == nil {
			argv = []any{}
		}
		out = append(out, map[string]any{
			"id":   v.id,
			"name": n.nameOfLocked(v.id),
			"network": map[string]any{
				"canonical_addresses": addrs,
				"cluster_port":        float64(v.info.ClusterPort),
				"connected_to":        connected,
				"hostname":            v.info.Hostname,
				"http_admin_port":     httpPort,
				"reql_port":           float64(v.info.ReqlPort),
				"time_connected":      timeDatum(v.since),
			},
			"process": map[string]any{
				"argv":          argv,
				"cache_size_mb": v.info.CacheMB,
				"pid":           float64(v.info.PID),
				"time_started":  epochDatum(v.info.Started),
				"version":       versionString,
			},
		})
	}
	return out
}

func (n *Node) tableConfigRowLocked(t *TableMeta, uuid bool) map[string]any {
	if !n.tableAvailableLocked(t) {
		return map[string]any{
			"db": n.dbRefLocked(t.DB, uuid), "error": "None of the replicas for this table are accessible.",
			"id": t.ID, "name": t.Name,
		}
	}
	p := n.serverRefLocked(t.Primary, uuid)
	return map[string]any{
		"db":          n.dbRefLocked(t.DB, uuid),
		"durability":  "hard",
		"id":          t.ID,
		"indexes":     []any{},
		"name":        t.Name,
		"primary_key": t.PrimaryKey,
		"shards": []any{map[string]any{
			"nonvoting_replicas": []any{},
			"primary_replica":    p,
			"replicas":           []any{p},
		}},
		"write_acks": "majority",
		"write_hook": nil,
	}
}

func tableStatus(ok bool) map[string]any {
	return map[string]any{
		"all_replicas_ready": ok, "ready_for_outdated_reads": ok,
		"ready_for_reads": ok, "ready_for_writes": ok,
	}
}

func (n *Node) tableStatusRowLocked(t *TableMeta, uuid bool) map[string]any {
	row := map[string]any{"db": n.dbRefLocked(t.DB, uuid), "id": t.ID, "name": t.Name}
	if !n.tableAvailableLocked(t) {
		row["raft_leader"] = nil
		row["shards"] = nil
		row["status"] = tableStatus(false)
		return row
	}
	p := n.serverRefLocked(t.Primary, uuid)
	row["raft_leader"] = p
	row["shards"] = []any{map[string]any{
		"primary_replicas": []any{p},
		"replicas":         []any{map[string]any{"server": p, "state": "ready"}},
	}}
	row["status"] = tableStatus(true)
	return row
}

// issuesLocked computes current_issues: name collisions of databases,
// tables and connected servers, and tables whose primary is unreachable.
func (n *Node) issuesLocked() []map[string]any {
	var out []map[string]any
	collision := func(typ, what, table, name string, ids []string, db string) {
		slices.Sort(ids)
		plural := what + "s"
		desc := fmt.Sprintf("There are multiple %s named `%s`. RethinkDB requires that every %s have a unique name. "+
			"Please update the `name` field of the conflicting %s' documents in the `rethinkdb.%s` system table.\n\n"+
			"The UUIDs of the conflicting %s are as follows: %s",
			plural, name, what, plural, table, plural, strings.Join(ids, ", "))
		if typ == "table_name_collision" {
			desc = fmt.Sprintf("There are multiple tables named `%s.%s`. RethinkDB requires that every table in a database have a unique name. "+
				"Please update the `name` field of the conflicting tables' documents in the `rethinkdb.table_config` system table.\n\n"+
				"The UUIDs of the conflicting tables are as follows: %s", db, name, strings.Join(ids, ", "))
		}
		var idv []any
		for _, id := range ids {
			idv = append(idv, id)
		}
		info := map[string]any{"ids": idv, "name": name}
		if typ == "table_name_collision" {
			info["db"] = db
		}
		out = append(out, map[string]any{
			"critical": true, "description": desc, "id": issueID(typ, ids...), "info": info, "type": typ,
		})
	}

	byName := map[string][]string{}
	var names []string
	for _, d := range n.meta.liveDBs() {
		if byName[d.Name] == nil {
			names = append(names, d.Name)
		}
		byName[d.Name] = append(byName[d.Name], d.ID)
	}
	for _, name := range names {
		if ids := byName[name]; len(ids) > 1 {
			collision("db_name_collision", "database", "db_config", name, ids, "")
		}
	}

	type tkey struct{ db, name string }
	byTable := map[tkey][]string{}
	var tkeys []tkey
	for _, t := range n.meta.liveTables() {
		k := tkey{t.DB, t.Name}
		if byTable[k] == nil {
			tkeys = append(tkeys, k)
		}
		byTable[k] = append(byTable[k], t.ID)
	}
	for _, k := range tkeys {
		if ids := byTable[k]; len(ids) > 1 {
			collision("table_name_collision", "table", "table_config", k.name, ids, n.dbRefLocked(k.db, false))
		}
	}

	bySrv := map[string][]string{}
	var snames []string
	for _, v := range n.visibleServersLocked() {
		name := n.nameOfLocked(v.id)
		if bySrv[name] == nil {
			snames = append(snames, name)
		}
		bySrv[name] = append(bySrv[name], v.id)
	}
	for _, name := range snames {
		if ids := bySrv[name]; len(ids) > 1 {
			collision("server_name_collision", "server", "server_config", name, ids, "")
		}
	}

	for _, t := range n.meta.liveTables() {
		if n.tableAvailableLocked(t) {
			continue
		}
		db := n.dbRefLocked(t.DB, false)
		out = append(out, map[string]any{
			"critical":    true,
			"description": fmt.Sprintf("Table `%s.%s` is not available for any operations. No servers are reachable for this table.", db, t.Name),
			"id":          issueID("table_availability", t.ID),
			"info": map[string]any{
				"db": db, "raft_leader": nil, "shards": nil, "status": tableStatus(false), "table": t.Name,
			},
			"type": "table_availability",
		})
	}
	return out
}
