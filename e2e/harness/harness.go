// Package harness runs rethinkdb servers, proxies and other programs for the
// end-to-end scenarios, and cleans up after them.
//
// The binary is RETHINKDB_BIN if set (a real rethinkdb 2.4.4), else
// RETHINKDB_SIM (the Makefile builds bin/rethinkdb-sim and sets it), else
// ./cmd/rethinkdb-sim built once per test binary. Scenarios never ask which
// one runs: everything here works the same against both, using only what the
// recordings in e2e/testdata/rethinkdb-2.4.4 show a real server doing.
//
// All nodes share 127.0.0.1 with distinct, free ports: a real server bound
// to one loopback address listens on every loopback address, so nodes on
// 127.0.0.x addresses cannot share ports.
package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	r "gopkg.in/rethinkdb/rethinkdb-go.v6"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/testutil"
)

// Timeouts for start-up; generous for a loaded 2-core box.
const (
	StartTimeout = 60 * time.Second
	LogTimeout   = 30 * time.Second
)

// Main runs the tests of an e2e package: use it from TestMain. After the
// tests it kills any process a test left behind and fails the run if there
// was one; an interrupt (^C) kills every child first.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit: it returns the exit code, for a TestMain
// that checks more after the tests (goleak, say). Every goroutine it
// starts has ended when it returns.
func Run(m *testing.M) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		sig, ok := <-sigs
		if !ok {
			return
		}
		killAll()
		fmt.Fprintf(os.Stderr, "harness: got %v, killed every child process\n", sig)
		os.Exit(2)
	}()
	code := m.Run()
	// After Stop no signal is sent on sigs: closing it ends the goroutine.
	signal.Stop(sigs)
	close(sigs)
	<-handled
	if left := killAll(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "harness: processes left running after the tests (killed now): %s\n", strings.Join(left, ", "))
		if code == 0 {
			code = 1
		}
	}
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	return code
}

// Runner is m with Run doing harness.Run, for a TestMain that runs the
// tests through another wrapper: goleak.VerifyTestMain(harness.Runner(m)).
func Runner(m *testing.M) interface{ Run() int } { return runner{m} }

type runner struct{ m *testing.M }

func (r runner) Run() int { return Run(r.m) }

var (
	buildOnce sync.Once
	buildDir  string
	builtBin  string
	buildErr  error
)

// Binary returns the rethinkdb binary the scenarios run (see the package doc).
func Binary(t testing.TB) string {
	t.Helper()
	for _, env := range []string{"RETHINKDB_BIN", "RETHINKDB_SIM"} {
		if b := os.Getenv(env); b != "" {
			if err := checkBinary(b); err != nil {
				t.Fatalf("harness: %s=%s: %v", env, b, err)
			}
			return b
		}
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "rethinkdb-sim-build")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "rethinkdb-sim")
		cmd := exec.Command("go", "build", "-o", builtBin, "github.com/rethinkdb-agent/rethinkdb-agent/cmd/rethinkdb-sim")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/rethinkdb-sim: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("harness: no RETHINKDB_BIN or RETHINKDB_SIM, and building the simulator failed: %v", buildErr)
	}
	return builtBin
}

// checkBinary refuses a binary path that would not name the same program
// everywhere: every process runs in a temporary directory (a relative path
// with a slash would be looked up there), go test runs in the package's
// directory rather than where the command was typed, and the agents get the
// same value for their proxies.
func checkBinary(b string) error {
	if strings.ContainsRune(b, filepath.Separator) && !filepath.IsAbs(b) {
		return errors.New("give an absolute path or a name on PATH: processes run in temporary directories")
	}
	if _, err := exec.LookPath(b); err != nil {
		return err
	}
	return nil
}

// Cluster is a set of processes belonging to one test. Everything it starts
// is killed when the test ends; if the test failed, every process's output
// is printed (and saved under $E2E_LOG_DIR when that is set).
type Cluster struct {
	t   testing.TB
	bin string

	mu    sync.Mutex
	procs []*Process
	names map[string]int
}

// New returns a Cluster bound to t.
func New(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: Binary(t), names: map[string]int{}}
	// Registered first, so it runs last: after every process is gone.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		keep := os.Getenv("E2E_LOG_DIR")
		for _, p := range c.procs {
			t.Logf("==== output of %s (%s %s):\n%s", p.Name, p.Path, strings.Join(p.Args, " "), indent(p.Output()))
			if keep != "" {
				saveLog(t, keep, p)
			}
		}
	})
	return c
}

// saveLog copies a failed test's process output to
// $E2E_LOG_DIR/<test name>/<process name>.log, for CI artifacts.
func saveLog(t testing.TB, dir string, p *Process) {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '/' || r == ' ' || r == '#' || r == '@' || r == '(' || r == ')' {
				return '_'
			}
			return r
		}, s)
	}
	d := filepath.Join(dir, clean(t.Name()))
	if err := os.MkdirAll(d, 0o755); err == nil {
		err = os.WriteFile(filepath.Join(d, clean(p.Name)+".log"), []byte(p.Output()), 0o644)
		if err == nil {
			return
		}
	}
	t.Logf("harness: could not save the log of %s under %s", p.Name, dir)
}

// uniqueName makes process names unique within the cluster (restarts,
// several proxies): "proxy", "proxy#2", ...
func (c *Cluster) uniqueName(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names[name]++
	if n := c.names[name]; n > 1 {
		return fmt.Sprintf("%s#%d", name, n)
	}
	return name
}

// start starts a process with cleanup: the process group is killed when the
// test ends (before the temporary directories made so far are removed).
func (c *Cluster) start(name, path string, args ...string) (*Process, error) {
	dir := c.t.TempDir()
	p, err := startProcess(c.uniqueName(name), dir, filepath.Join(dir, "output.log"), path, args...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.t.Cleanup(func() {
		defer func() {
			if v := recover(); v != nil {
				c.t.Errorf("harness: cleanup of %s panicked: %v", p.Name, v)
			}
		}()
		p.Kill()
	})
	return p, nil
}

// StartProcess starts an arbitrary program (the agent, ...) with the same
// process-group handling, output capture and cleanup as the servers. Its
// working directory is a fresh temporary directory.
func (c *Cluster) StartProcess(name, path string, args ...string) *Process {
	c.t.Helper()
	p, err := c.start(name, path, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// ServerOptions describes a server to start. Zero values are defaults.
type ServerOptions struct {
	// Name is --server-name (none if empty: the server generates one).
	Name string
	// Join lists nodes to --join (their cluster address); JoinAddrs adds
	// raw host:port values.
	Join      []*Node
	JoinAddrs []string
	// Dir is the data directory; a fresh temporary one if empty.
	Dir string
	// Ports; 0 picks a free port on 127.0.0.1.
	ClusterPort, DriverPort, HTTPPort int
	// HTTPAdmin keeps the web console (on HTTPPort); otherwise --no-http-admin.
	HTTPAdmin bool
	// CacheSizeMB is --cache-size (omitted when 0). The recordings used 256.
	CacheSizeMB int
	// InitialPassword is passed in a --config-file, never on the command
	// line (server_status.process.argv shows argv to every client).
	InitialPassword string
	// Args are extra command-line arguments.
	Args []string
	// Host runs the server in a network namespace (see NewNetwork) with
	// the default ports (29015, 28015, 8080 unless set) and --bind all.
	Host *Host
	// Bind replaces the default --bind (127.0.0.1, or all on a Host).
	Bind []string
	// Label names the process in failure logs (default: Name). Restarts
	// get "#2", "#3", ...
	Label string
	// NoWait returns as soon as the process started, without waiting for
	// "Server ready" (e.g. a server whose --join peers are unreachable).
	NoWait bool
}

// Node is a server or a proxy started by the harness.
type Node struct {
	*Process
	c    *Cluster
	opts ServerOptions

	// ID is the server's uuid, or "proxy-<uuid>" for a proxy, once ready.
	ID string
	// ServerName is the name in "Server ready" (empty for a proxy).
	ServerName string

	proxy bool
	joins []string
	host  *Host
	// Ports in use; for a proxy they are read from its log.
	ClusterPort, DriverPort, HTTPPort int
}

// Proxy is a `rethinkdb proxy` started by the harness.
type Proxy struct{ *Node }

// IP is the node's address: 127.0.0.1, or its host's on a Network.
func (n *Node) IP() string {
	if n.host != nil {
		return n.host.IP
	}
	return "127.0.0.1"
}

// ClusterAddr is "<ip>:<cluster port>", for --join.
func (n *Node) ClusterAddr() string { return net.JoinHostPort(n.IP(), strconv.Itoa(n.ClusterPort)) }

// DriverAddr is "<ip>:<driver port>", for clients.
func (n *Node) DriverAddr() string { return net.JoinHostPort(n.IP(), strconv.Itoa(n.DriverPort)) }

// Dir is the node's data directory ("" for a proxy).
func (n *Node) Dir() string { return n.opts.Dir }

var (
	readyRE        = regexp.MustCompile(`^Server ready, "([^"]*)" ([0-9a-f-]{36})$`)
	proxyReadyRE   = regexp.MustCompile(`^Proxy ready, (proxy-[0-9a-f-]{36})$`)
	clusterPortRE  = regexp.MustCompile(`^Listening for intracluster connections on port (\d+)$`)
	driverPortRE   = regexp.MustCompile(`^Listening for client driver connections on port (\d+)$`)
	maxStartTrials = 3
)

// addrInUseRE matches a start that failed because a port was taken between
// freePort and the server's bind. A real server words it per listener: the
// cluster port fails in bind_sockets with tcp_socket_exc_t ("error: TCP
// socket creation failed for port N: Address already in use.",
// logs/bind-loopback.log); the driver and HTTP listeners rethrow
// address_in_use_exc_t ("error: Could not bind to RDB protocol port: The
// address at localhost:N is reserved or already in use.": src/arch/types.cc,
// src/client_protocol/server.cc:211, src/http/http.cc:371 in v2.4.4).
var addrInUseRE = regexp.MustCompile(`Address already in use|is reserved or already in use`)

// StartServer starts a rethinkdb server on 127.0.0.1 and waits until it
// logs "Server ready" (unless opts.NoWait).
func (c *Cluster) StartServer(opts ServerOptions) *Node {
	c.t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(c.t.TempDir(), "data")
	}
	n := &Node{c: c}
	if err := n.launch(opts); err != nil {
		c.t.Fatal(err)
	}
	return n
}

// launch starts the server process, retrying with new ports when ports the
// harness picked were taken in the meantime.
func (n *Node) launch(opts ServerOptions) error {
	c := n.c
	for trial := 1; ; trial++ {
		o := opts
		if o.Host != nil {
			o.ClusterPort = orDefault(o.ClusterPort, 29015)
			o.DriverPort = orDefault(o.DriverPort, 28015)
			if o.HTTPAdmin {
				o.HTTPPort = orDefault(o.HTTPPort, 8080)
			}
		}
		picked := o.ClusterPort == 0 || o.DriverPort == 0 || o.HTTPAdmin && o.HTTPPort == 0
		if o.ClusterPort == 0 {
			o.ClusterPort = freePort()
		}
		if o.DriverPort == 0 {
			o.DriverPort = freePort()
		}
		if o.HTTPAdmin && o.HTTPPort == 0 {
			o.HTTPPort = freePort()
		}
		args, err := serverArgs(c.t, o)
		if err != nil {
			return err
		}
		name := o.Label
		if name == "" {
			name = o.Name
		}
		if name == "" {
			name = "server"
		}
		if o.Host != nil {
			name += "@" + o.Host.Name
		}
		prog, argv := o.Host.command(c.bin, args...)
		p, err := c.start(name, prog, argv...)
		if err != nil {
			return err
		}
		n.Process, n.opts, n.proxy, n.host = p, o, false, o.Host
		n.ClusterPort, n.DriverPort, n.HTTPPort = o.ClusterPort, o.DriverPort, o.HTTPPort
		if o.NoWait {
			return nil
		}
		m, err := p.awaitOutput("Server ready", StartTimeout, firstMatch(readyRE))
		if err == nil {
			n.ServerName, n.ID = m[1], m[2]
			return nil
		}
		if _, exited := err.(*exitedError); exited && picked && trial < maxStartTrials && addrInUseRE.MatchString(p.Output()) {
			continue
		}
		p.Kill()
		return err
	}
}

func firstMatch(re *regexp.Regexp) func(string) []string {
	return func(out string) []string {
		for _, line := range strings.Split(out, "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		}
		return nil
	}
}

func serverArgs(t testing.TB, o ServerOptions) ([]string, error) {
	args := []string{"--directory", o.Dir}
	if o.Name != "" {
		args = append(args, "--server-name", o.Name)
	}
	args = append(args, "--cluster-port", strconv.Itoa(o.ClusterPort), "--driver-port", strconv.Itoa(o.DriverPort))
	if o.HTTPAdmin {
		args = append(args, "--http-port", strconv.Itoa(o.HTTPPort))
	} else {
		args = append(args, "--no-http-admin")
	}
	switch {
	case len(o.Bind) > 0:
		for _, b := range o.Bind {
			args = append(args, "--bind", b)
		}
	case o.Host != nil:
		args = append(args, "--bind", "all")
	default:
		args = append(args, "--bind", "127.0.0.1")
	}
	if o.CacheSizeMB > 0 {
		args = append(args, "--cache-size", strconv.Itoa(o.CacheSizeMB))
	}
	for _, j := range o.Join {
		args = append(args, "--join", j.ClusterAddr())
	}
	for _, j := range o.JoinAddrs {
		args = append(args, "--join", j)
	}
	if o.InitialPassword != "" {
		if err := configFileValue(o.InitialPassword); err != nil {
			return nil, fmt.Errorf("harness: InitialPassword: %w", err)
		}
		f := filepath.Join(t.TempDir(), "rethinkdb.conf")
		if err := os.WriteFile(f, []byte("initial-password="+o.InitialPassword+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("harness: config file: %w", err)
		}
		args = append(args, "--config-file", f)
	}
	return append(args, o.Args...), nil
}

// configFileValue refuses a value that a rethinkdb config file line would
// not carry unchanged: '#' starts a comment anywhere on the line, the line
// ends at a newline, and blanks around the value are trimmed
// (options::parse_config_file, src/clustering/administration/main/options.cc
// in v2.4.4).
func configFileValue(v string) error {
	switch {
	case strings.ContainsAny(v, "#\n\r"):
		return errors.New("a rethinkdb config file cannot hold '#' or a line break in a value")
	case strings.TrimSpace(v) != v:
		return errors.New("a rethinkdb config file trims blanks around a value")
	}
	return nil
}

// Restart stops the server (SIGTERM) and starts it again on the same data
// directory and ports. opts replaces the options of the first start, except
// that an empty Dir and zero ports keep the previous ones.
func (n *Node) Restart(opts ServerOptions) {
	n.c.t.Helper()
	if n.proxy {
		n.c.t.Fatal("harness: Restart of a proxy; start a new one")
	}
	n.Stop()
	if opts.Dir == "" {
		opts.Dir = n.opts.Dir
	}
	if opts.ClusterPort == 0 {
		opts.ClusterPort = n.ClusterPort
	}
	if opts.DriverPort == 0 {
		opts.DriverPort = n.DriverPort
	}
	if opts.HTTPPort == 0 {
		opts.HTTPPort = n.HTTPPort
	}
	if opts.Host == nil {
		opts.Host = n.host
	}
	if err := n.launch(opts); err != nil {
		n.c.t.Fatal(err)
	}
}

// StartProxy starts `rethinkdb proxy --join <each node>` on free ports
// (--cluster-port 0 --driver-port 0 --no-http-admin), reads its ports from
// its log and waits for "Proxy ready".
func (c *Cluster) StartProxy(joins ...*Node) *Proxy {
	c.t.Helper()
	return c.StartProxyOn(nil, joins...)
}

// StartProxyOn is StartProxy inside host h (with --bind all), or on
// 127.0.0.1 when h is nil.
func (c *Cluster) StartProxyOn(h *Host, joins ...*Node) *Proxy {
	c.t.Helper()
	args := []string{"proxy"}
	var addrs []string
	for _, j := range joins {
		args = append(args, "--join", j.ClusterAddr())
		addrs = append(addrs, j.ClusterAddr())
	}
	bind, name := "127.0.0.1", "proxy"
	if h != nil {
		bind, name = "all", "proxy@"+h.Name
	}
	args = append(args, "--cluster-port", "0", "--driver-port", "0", "--no-http-admin", "--bind", bind)
	prog, argv := h.command(c.bin, args...)
	p, err := c.start(name, prog, argv...)
	if err != nil {
		c.t.Fatal(err)
	}
	n := &Node{Process: p, c: c, proxy: true, joins: addrs, host: h}
	n.ClusterPort = atoiOrFatal(c.t, p.WaitLogMatch(c.t, clusterPortRE, StartTimeout)[1])
	n.DriverPort = atoiOrFatal(c.t, p.WaitLogMatch(c.t, driverPortRE, StartTimeout)[1])
	n.ID = p.WaitLogMatch(c.t, proxyReadyRE, StartTimeout)[1]
	return &Proxy{n}
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func atoiOrFatal(t testing.TB, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("harness: bad port %q in log", s)
	}
	return n
}

// Session connects a rethinkdb-go session to the node's driver port as
// admin with the node's InitialPassword, retrying until it answers (up to
// StartTimeout). It is closed at cleanup.
func (n *Node) Session(t testing.TB) *r.Session {
	t.Helper()
	return n.SessionWithPassword(t, n.opts.InitialPassword)
}

// SessionWithPassword is Session with another admin password (a proxy has
// no options of its own; a merged cluster has one admin password).
func (n *Node) SessionWithPassword(t testing.TB, password string) *r.Session {
	t.Helper()
	var s *r.Session
	var last error
	Eventually(t, StartTimeout, func() (bool, string) {
		var err error
		s, err = r.Connect(r.ConnectOpts{
			Address:  n.DriverAddr(),
			Password: password,
			Timeout:  5 * time.Second,
		})
		if err != nil {
			last = err
			return false, fmt.Sprintf("connect to %s (%s): %v", n.Name, n.DriverAddr(), last)
		}
		return true, ""
	})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Eventually polls cond until it returns true, and fails the test with the
// last message if it does not within timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	// Every 50 ms: conditions here usually query a server.
	testutil.EventuallyEvery(t, timeout, 50*time.Millisecond, cond)
}

// Consistently checks that cond holds at every poll during d, and fails the
// test at the first time it does not.
func Consistently(t testing.TB, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok, msg := cond(); !ok {
			t.Fatalf("condition stopped holding: %s", msg)
		}
		if time.Now().After(deadline) {
			return
		}
		<-tick.C
	}
}

// freePort returns a port free on 127.0.0.1 and ::1 (a real server bound
// to 127.0.0.1 also listens on ::1) and not handed out before by this test
// binary.
func freePort() int {
	for {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			panic(fmt.Sprintf("harness: no free port: %v", err))
		}
		port := l.Addr().(*net.TCPAddr).Port
		l6, err6 := net.Listen("tcp6", "[::1]:"+strconv.Itoa(port))
		_ = l.Close()
		if err6 == nil {
			_ = l6.Close()
		} else if !strings.Contains(err6.Error(), "cannot assign") && !strings.Contains(err6.Error(), "address family") {
			continue // in use on ::1
		}
		portsMu.Lock()
		seen := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if !seen {
			return port
		}
	}
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// Query runs a read query with raw time format (documents exactly as the
// server sends them, as in the recordings) and returns all rows.
func Query(ctx context.Context, s *r.Session, q r.Term) ([]any, error) {
	cur, err := q.Run(s, r.RunOpts{TimeFormat: "raw", Context: ctx})
	if err != nil {
		return nil, err
	}
	defer cur.Close()
	var rows []any
	if err := cur.All(&rows); err != nil {
		return nil, err
	}
	return rows, nil
}
