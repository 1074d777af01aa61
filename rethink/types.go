package rethink

import "time"

// Addr is one entry of server_status.network.canonical_addresses.
type Addr struct {
	Host string
	Port int
}

// Server merges a server_status row with its server_config tags.
type Server struct {
	ID                 string
	Name               string
	Tags               []string
	Hostname           string
	CanonicalAddresses []Addr
	ClusterPort        int
	DriverPort         int // network.reql_port
	// ConnectedTo holds the keys of network.connected_to whose value is
	// true, sorted: server names, "proxy-<uuid>" for proxies and
	// "<name>__conflict__<uuid>" for a server whose name collides. Keys with
	// false (known to the cluster, not connected to this server) are left
	// out.
	ConnectedTo []string
	TimeStarted time.Time
}

// Issue is a row of current_issues. Name, IDs and DB come from info: for
// db_name_collision and server_name_collision Name is info.name and IDs is
// info.ids; for table_availability Name is info.table and DB is info.db.
type Issue struct {
	ID          string
	Type        string
	Critical    bool
	Description string
	Name        string
	IDs         []string
	DB          string
	Raw         map[string]any
}

// Issue types the agent acts on.
const (
	IssueDBNameCollision     = "db_name_collision"
	IssueServerNameCollision = "server_name_collision"
	IssueTableNameCollision  = "table_name_collision"
	IssueTableAvailability   = "table_availability"
)

// DB is a db_config row.
type DB struct {
	ID   string
	Name string
}

// Table is a table_config row read with identifier_format "uuid". Error is
// set (and the other config is absent) when none of the table's replicas are
// reachable.
type Table struct {
	ID     string
	Name   string
	DBID   string
	DBName string // from db_config; "" if the database is not listed
	Error  string
}

// View is one read of the cluster as seen from one server.
type View struct {
	Self    Server
	Servers []Server // sorted by name, then id
	Proxies []string // "proxy-<uuid>" keys seen in any connected_to, sorted
	Issues  []Issue
	DBs     []DB    // sorted by name, then id
	Tables  []Table // sorted by db name, name, id
}

// Server returns the server with the given id.
func (v View) Server(id string) (Server, bool) {
	for _, s := range v.Servers {
		if s.ID == id {
			return s, true
		}
	}
	return Server{}, false
}
