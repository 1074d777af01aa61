package node

import (
	"errors"
	"io"
	"time"
)

// Config is what the command line resolves to. The cli package fills it; the
// node never parses flags.
type Config struct {
	// Proxy makes this node a proxy: no data directory, no name, no tables;
	// it shows up only in other servers' connected_to as proxy-<uuid>.
	Proxy bool
	// Directory is the data directory (servers only). A new directory is
	// initialised on first start.
	Directory string
	// CreateOnly initialises Directory without the `test` database and
	// returns (the `rethinkdb create` subcommand).
	CreateOnly bool
	// ServerName is --server-name; empty means generate one from the
	// hostname. It is ignored (with the real warning) once the data
	// directory has a name.
	ServerName string
	// Tags are the --server-tag values; "default" is always added.
	Tags []string
	// Bind lists --bind addresses; "all" binds every address. Loopback
	// addresses are always added, as the real server does.
	Bind []string
	// CanonicalAddresses are --canonical-address host[:port] values.
	CanonicalAddresses []string
	// Ports, already adjusted by --port-offset. 0 picks a free port.
	ClusterPort, DriverPort, HTTPPort int
	NoHTTPAdmin                       bool
	// Join lists --join host:port values.
	Join []string
	// InitialPassword is --initial-password for a new data directory
	// ("auto" generates one). Empty means no password.
	InitialPassword string
	// ReconnectTimeout is --cluster-reconnect-timeout (default 24h).
	ReconnectTimeout time.Duration
	// ClusterTLSKey, ClusterTLSCert and ClusterTLSCA are the --cluster-tls-*
	// trio: all set or all empty.
	ClusterTLSKey, ClusterTLSCert, ClusterTLSCA string
	// Argv is the process command line, shown in server_status.process.argv.
	Argv []string
	// CacheSizeMB is --cache-size in MB; 0 means "auto".
	CacheSizeMB float64
	// Log receives the server's log lines, one per Write, with the real
	// server's wording.
	Log io.Writer
}

// ErrNotImplemented is returned by stubs that are not built yet.
var ErrNotImplemented = errors.New("rethinkdb-sim: not implemented")
