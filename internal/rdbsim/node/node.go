package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Version is the version string of the server being simulated.
const versionString = "rethinkdb 2.4.4 (x86_64-linux-gnu) (GCC 12.2.0)"

// defaultReconnectTimeout is --cluster-reconnect-timeout's default.
const defaultReconnectTimeout = 24 * time.Hour

// autoCacheMB is what process.cache_size_mb reports when --cache-size is
// not given (the real server derives it from the free memory).
const autoCacheMB = 1024.0

// Node is one server or proxy. Create it with New and serve with Run; the
// accessors let tests in this package and the cli find the ports it picked.
type Node struct {
	cfg       Config
	id        string
	proxy     bool
	hostname  string
	pid       int
	started   time.Time
	reconnect time.Duration
	logw      io.Writer
	logMu     sync.Mutex

	// Fixed once Run has the cluster port.
	clusterLn   *multiListener
	clusterPort int
	bindHosts   []string
	bindAll     bool
	canonical   []hostPort
	tls         *tlsConfigs

	listening chan struct{} // closed once the cluster port is open
	ready     chan struct{} // closed at "Server ready"/"Proxy ready"

	mu         sync.Mutex
	meta       *Meta
	data       map[string]*tableData // tables this server hosts, by id
	conns      map[string]*peerConn  // established peer connections, by id
	connOrder  []string              // ids of conns, oldest first
	dialers    map[string]*dialer
	addrID     map[string]string // dialled address -> id that answered there
	refused    map[string]bool   // addr|id refusals already logged
	changeCh   chan struct{}     // closed and replaced on every change
	driverPort int
	httpPort   int
	selfSince  time.Time
	closing    bool
	runCtx     context.Context

	wg sync.WaitGroup // every goroutine the node starts
}

// Run starts the node and serves until ctx ends, then shuts down and returns.
// It prints the real server's log lines to cfg.Log: the listening ports,
// "Server ready, \"name\" uuid" or "Proxy ready, proxy-uuid", and the
// connected/disconnected lines.
//
// When ctx is cancelled with a cause (context.WithCancelCause) other than
// context.Canceled, the cause's text is logged first, so the command line
// can pass "Server got SIGTERM from pid N, uid 0; shutting down...".
func Run(ctx context.Context, cfg Config) error {
	n, err := New(cfg)
	if err != nil {
		return err
	}
	if cfg.CreateOnly {
		return nil
	}
	return n.Run(ctx)
}

// New validates cfg and loads (or initialises) the data directory. With
// cfg.CreateOnly the directory is initialised without the `test` database
// and the node must not be run.
func New(cfg Config) (*Node, error) {
	n := &Node{
		cfg:       cfg,
		proxy:     cfg.Proxy,
		pid:       os.Getpid(),
		started:   time.Now(),
		reconnect: cfg.ReconnectTimeout,
		logw:      cfg.Log,
		listening: make(chan struct{}),
		ready:     make(chan struct{}),
		meta:      newMeta(),
		data:      map[string]*tableData{},
		conns:     map[string]*peerConn{},
		dialers:   map[string]*dialer{},
		addrID:    map[string]string{},
		refused:   map[string]bool{},
		changeCh:  make(chan struct{}),
	}
	if n.logw == nil {
		n.logw = io.Discard
	}
	if n.reconnect <= 0 {
		n.reconnect = defaultReconnectTimeout
	}
	n.hostname, _ = os.Hostname()
	if n.hostname == "" {
		n.hostname = "localhost"
	}
	if n.cfg.ClusterPort < 0 || n.cfg.DriverPort < 0 || n.cfg.HTTPPort < 0 ||
		n.cfg.ClusterPort > 65535 || n.cfg.DriverPort > 65535 || n.cfg.HTTPPort > 65535 {
		return nil, fmt.Errorf("invalid port in config: cluster %d, driver %d, http %d", cfg.ClusterPort, cfg.DriverPort, cfg.HTTPPort)
	}
	tc, err := loadTLS(cfg)
	if err != nil {
		return nil, err
	}
	n.tls = tc
	if cfg.Proxy {
		if cfg.CreateOnly {
			return nil, errors.New("a proxy has no data directory to create")
		}
		n.id = newUUID()
		return n, nil
	}
	if cfg.Directory == "" {
		return nil, errors.New("no data directory given")
	}
	if err := n.loadOrInit(); err != nil {
		return nil, err
	}
	return n, nil
}

// loadOrInit reads the data directory, or creates it with a fresh identity.
func (n *Node) loadOrInit() error {
	dir := n.cfg.Directory
	st, exists, err := loadState(dir)
	if err != nil {
		return err
	}
	if exists {
		if n.cfg.ServerName != "" {
			n.logf("WARNING: ignoring --server-name because this server already has a name.")
		}
		n.id = st.ServerID
		n.meta = st.Meta
		if _, ok := n.meta.Servers[n.id]; !ok {
			return fmt.Errorf("data directory %s: no configuration for its own server %s", dir, n.id)
		}
		n.logStartBanner()
		for _, t := range n.meta.Tables {
			if t.Primary != n.id || t.Deleted {
				continue
			}
			docs, err := loadTable(dir, t.ID)
			if err != nil {
				return fmt.Errorf("data directory %s: %w", dir, err)
			}
			td := newTableData()
			for _, d := range docs {
				if m, ok := d.(map[string]any); ok {
					if k, ok := m[t.PrimaryKey]; ok {
						td.docs[keyString(k)] = m
					}
				}
			}
			n.data[t.ID] = td
		}
		return nil
	}

	name := n.cfg.ServerName
	if name == "" {
		name = generatedServerName(n.hostname)
	} else if !validServerName(name) {
		return fmt.Errorf("server name %q is invalid (use A-Z, a-z, 0-9 and _ only)", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("could not create data directory %s: %w", dir, err)
	}
	n.logf("Recursively removing directory %s", strings.TrimSuffix(dir, "/")+"/tmp")
	n.logf("Initializing directory %s", dir)
	n.id = newUUID()
	tags := []string{"default"}
	for _, t := range n.cfg.Tags {
		if t == "" || !validServerName(t) {
			return fmt.Errorf("server tag %q is invalid (use A-Z, a-z, 0-9 and _ only)", t)
		}
		if !contains(tags, t) {
			tags = append(tags, t)
		}
	}
	sm := &ServerMeta{ID: n.id, Name: name, Tags: tags, V: n.meta.tick(n.id)}
	if n.cfg.CacheSizeMB > 0 {
		c := n.cfg.CacheSizeMB
		sm.Cache = &c
	}
	n.meta.Servers[n.id] = sm
	if len(n.cfg.Join) == 0 && !n.cfg.CreateOnly {
		id := newUUID()
		n.meta.DBs[id] = &DBMeta{ID: id, Name: "test", V: n.meta.tick(n.id)}
	}
	if pw := n.cfg.InitialPassword; pw != "" {
		if pw == "auto" {
			pw = newUUID()
		}
		n.meta.Password = PasswordMeta{Password: pw, V: n.meta.tick(n.id)}
	}
	if err := saveState(dir, &diskState{Format: 1, ServerID: n.id, Meta: n.meta}); err != nil {
		return fmt.Errorf("could not initialise data directory %s: %w", dir, err)
	}
	if !n.cfg.CreateOnly {
		n.logStartBanner()
	}
	return nil
}

func (n *Node) logStartBanner() {
	n.logf("Running %s...", versionString)
	rel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	n.logf("Running on Linux %s x86_64", strings.TrimSpace(string(rel)))
	n.logf("Loading data from directory %s", n.cfg.Directory)
}

// ID is the server's (or proxy's) UUID.
func (n *Node) ID() string { return n.id }

// Listening is closed once the cluster port is open.
func (n *Node) Listening() <-chan struct{} { return n.listening }

// Ready is closed once the node has logged "Server ready"/"Proxy ready".
func (n *Node) Ready() <-chan struct{} { return n.ready }

// ClusterPort is the cluster port, valid once Listening is closed.
func (n *Node) ClusterPort() int {
	<-n.listening
	return n.clusterPort
}

// DriverPort is the driver port, valid once Ready is closed.
func (n *Node) DriverPort() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.driverPort
}

// AdminPassword is the admin user's current password ("" for none); the
// driver server calls it at every handshake.
func (n *Node) AdminPassword() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.meta.Password.Password
}

func (n *Node) logf(format string, a ...any) {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	fmt.Fprintf(n.logw, format+"\n", a...)
}

// changed wakes everything waiting on the node's state. Callers hold n.mu.
func (n *Node) changedLocked() {
	close(n.changeCh)
	n.changeCh = make(chan struct{})
}

// Run serves until ctx ends. It must be called once.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer n.wg.Wait()

	n.mu.Lock()
	n.runCtx = ctx
	n.mu.Unlock()
	if err := n.openCluster(); err != nil {
		return err
	}
	n.logf("Listening for intracluster connections on port %d", n.clusterPort)
	n.mu.Lock()
	n.selfSince = time.Now()
	n.mu.Unlock()
	close(n.listening)

	n.goFunc(func() { n.acceptLoop(ctx) })
	for _, j := range n.cfg.Join {
		n.startJoinDialer(ctx, j)
	}

	var driverLn, httpLn *multiListener
	var driverDone <-chan struct{}
	driverCtx, stopDriver := context.WithCancel(ctx)
	defer stopDriver()
	shutdown := func() {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			n.logf("%s", cause.Error())
		}
		n.logf("Shutting down client connections...")
		stopDriver()
		if driverLn != nil {
			driverLn.Close()
		}
		if driverDone != nil {
			<-driverDone
		}
		if httpLn != nil {
			httpLn.Close()
		}
		n.logf("All client connections closed.")
		n.logf("Shutting down storage engine... (This may take a while if you had a lot of unflushed data in the writeback cache.)")
		n.mu.Lock()
		n.closing = true
		n.persistMetaLocked()
		n.changedLocked()
		n.mu.Unlock()
		n.logf("Storage engine shut down.")
		n.clusterLn.Close()
		cancel()
		n.closeAllConns()
	}

	// A node with --join opens its driver port only once it has reached the
	// cluster (logs/join-unreachable.log, logs/s2.log).
	if len(n.cfg.Join) > 0 {
		if !n.waitJoined(ctx) {
			shutdown()
			return nil
		}
	}

	hosts := n.listenHosts()
	var err error
	driverLn, err = listenAll(n.bindHosts, n.cfg.DriverPort, n.bindAll)
	if err != nil {
		shutdown()
		return err
	}
	dport := driverLn.Port()
	n.logf("Listening for client driver connections on port %d", dport)
	hport := 0
	if !n.cfg.NoHTTPAdmin {
		httpLn, err = listenAll(n.bindHosts, n.cfg.HTTPPort, n.bindAll)
		if err != nil {
			shutdown()
			return err
		}
		hport = httpLn.Port()
		n.logf("Listening for administrative HTTP connections on port %d", hport)
	} else {
		n.logf("Administrative HTTP connections are disabled.")
	}
	n.mu.Lock()
	n.driverPort, n.httpPort = dport, hport
	n.mu.Unlock()

	driverDone = n.serveDriver(driverCtx, driverLn)
	if httpLn != nil {
		n.serveHTTP(ctx, httpLn)
	}

	n.logf("Listening on cluster addresses: %s", hosts)
	n.logf("Listening on driver addresses: %s", hosts)
	n.logf("Listening on http addresses: %s", hosts)
	if !n.bindAll {
		n.logf("To fully expose RethinkDB on the network, bind to all addresses by running rethinkdb with the `--bind all` command line option.")
	}
	n.mu.Lock()
	if n.proxy {
		n.logf("Proxy ready, proxy-%s", n.id)
	} else {
		n.logf("Server ready, \"%s\" %s", n.meta.Servers[n.id].Name, n.id)
	}
	n.changedLocked()
	n.mu.Unlock()
	close(n.ready)
	n.broadcastState() // peers learn our driver and http ports

	<-ctx.Done()
	shutdown()
	return nil
}

// waitJoined blocks until a connection to the cluster exists, then gives the
// mesh a moment to settle so that the peers it introduces are connected
// before the driver port opens, as the real server does.
func (n *Node) waitJoined(ctx context.Context) bool {
	for {
		n.mu.Lock()
		ok := len(n.conns) > 0
		ch := n.changeCh
		n.mu.Unlock()
		if ok {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	settle := time.NewTimer(time.Second)
	defer settle.Stop()
	for {
		n.mu.Lock()
		pending := false
		for _, d := range n.dialers {
			id := d.expect
			if d.join {
				id = n.addrID[d.addrs[0]]
			}
			if !d.everConnected && (id == "" || n.conns[id] == nil) {
				pending = true
			}
		}
		ch := n.changeCh
		n.mu.Unlock()
		if !pending {
			return true
		}
		select {
		case <-ch:
		case <-settle.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

func (n *Node) goFunc(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// serveHTTP answers every request with a small page: the agent never uses
// the web UI, but tools probe the port.
func (n *Node) serveHTTP(ctx context.Context, ln net.Listener) {
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<!DOCTYPE html><html><head><title>RethinkDB Administration Console</title></head><body>rethinkdb-sim</body></html>\n")
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	n.goFunc(func() { _ = srv.Serve(ln) })
	n.goFunc(func() {
		<-ctx.Done()
		_ = srv.Close()
	})
}

// persistMetaLocked writes the metadata of a server to its data directory.
// Callers hold n.mu.
func (n *Node) persistMetaLocked() {
	if n.proxy {
		return
	}
	if err := saveState(n.cfg.Directory, &diskState{Format: 1, ServerID: n.id, Meta: n.meta}); err != nil {
		n.logf("error: could not write metadata: %v", err)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
