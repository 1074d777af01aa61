// Package proxy supervises one temporary `rethinkdb proxy` process: it starts
// it on free ports, waits until it is ready, and stops it (whole process
// group, SIGTERM then SIGKILL) on request, on context cancellation or when
// its maximum lifetime is reached.
package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config describes the proxy to run.
type Config struct {
	Binary string // default "rethinkdb"
	// Joins are the cluster addresses to join, as IP:port. Host names are
	// refused: the real proxy exits on a name it cannot resolve, so the
	// caller resolves first.
	Joins            []string
	Bind             string // default 127.0.0.1; an IP or "all"
	CanonicalAddress string // optional host[:port] others use to reach the proxy
	// Cluster TLS files: all three or none.
	ClusterTLSKey, ClusterTLSCert, ClusterTLSCA string
	// InitialPasswordAuto passes `--initial-password auto`. A literal password
	// is deliberately not supported: server_status.process.argv would show
	// it to every client.
	InitialPasswordAuto bool
	MaxLifetime         time.Duration // hard cap, default 5m
	StopTimeout         time.Duration // SIGTERM to SIGKILL, default 10s
	ReadyTimeout        time.Duration // default 30s
	// Dir is the working directory (the proxy writes rethinkdb_data/ there).
	// Default: a temporary directory removed when the proxy has stopped.
	Dir    string
	Logger *slog.Logger
}

// ErrMaxLifetime is Err's value when the proxy was stopped because it ran
// for Config.MaxLifetime.
var ErrMaxLifetime = errors.New("proxy reached its maximum lifetime")

// errStopRequested is the stop reason of Stop; Err is nil then.
var errStopRequested = errors.New("stop requested")

func (c *Config) setDefaults() {
	if c.Binary == "" {
		c.Binary = "rethinkdb"
	}
	if c.Bind == "" {
		c.Bind = "127.0.0.1"
	}
	if c.MaxLifetime <= 0 {
		c.MaxLifetime = 5 * time.Minute
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() error {
	if len(c.Joins) == 0 {
		return errors.New("proxy: no --join address")
	}
	for _, j := range c.Joins {
		host, port, err := net.SplitHostPort(j)
		if err != nil {
			return fmt.Errorf("proxy: join address %q: want IP:port: %w", j, err)
		}
		if net.ParseIP(host) == nil {
			return fmt.Errorf("proxy: join address %q: %q is not an IP address (resolve names first)", j, host)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("proxy: join address %q: bad port %q", j, port)
		}
	}
	if c.Bind != "all" && net.ParseIP(c.Bind) == nil {
		return fmt.Errorf("proxy: bind address %q is neither an IP address nor \"all\"", c.Bind)
	}
	n := 0
	for _, f := range []string{c.ClusterTLSKey, c.ClusterTLSCert, c.ClusterTLSCA} {
		if f != "" {
			n++
		}
	}
	if n != 0 && n != 3 {
		return errors.New("proxy: cluster TLS key, cert and CA must be given together")
	}
	return nil
}

// args builds the command line. No secret ever goes here.
func (c *Config) args() []string {
	a := []string{"proxy", "--bind", c.Bind, "--cluster-port", "0", "--driver-port", "0", "--no-http-admin"}
	for _, j := range c.Joins {
		a = append(a, "--join", j)
	}
	if c.CanonicalAddress != "" {
		a = append(a, "--canonical-address", c.CanonicalAddress)
	}
	if c.ClusterTLSKey != "" {
		a = append(a, "--cluster-tls-key", c.ClusterTLSKey, "--cluster-tls-cert", c.ClusterTLSCert, "--cluster-tls-ca", c.ClusterTLSCA)
	}
	if c.InitialPasswordAuto {
		a = append(a, "--initial-password", "auto")
	}
	return a
}

// Proxy is a running (or finished) `rethinkdb proxy`.
type Proxy struct {
	cfg  Config
	log  *slog.Logger
	cmd  *exec.Cmd
	pgid int
	dir  string // removed after exit when we created it

	// Set by the output reader before ready is closed.
	id                      string
	clusterPort, driverPort int
	ready                   chan struct{}

	tailMu sync.Mutex
	tail   []string

	stopOnce sync.Once
	stopReq  chan struct{}

	reasonMu sync.Mutex
	reason   error // why we stopped it, nil if it exited on its own

	done chan struct{}
	err  error // set before done is closed
}

var (
	reIntracluster = regexp.MustCompile(`^Listening for intracluster connections on port (\d+)$`)
	reDriver       = regexp.MustCompile(`^Listening for client driver connections on port (\d+)$`)
	reReady        = regexp.MustCompile(`^Proxy ready, (proxy-[0-9a-fA-F-]+)$`)
)

const tailLines = 20

// Start runs the proxy and returns once it has logged "Proxy ready". If it
// exits first, or ReadyTimeout passes, or ctx ends, it is killed and the
// error carries the tail of its output. Cancelling ctx later stops it too.
func Start(ctx context.Context, cfg Config) (*Proxy, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:     cfg,
		log:     cfg.Logger,
		ready:   make(chan struct{}),
		stopReq: make(chan struct{}),
		done:    make(chan struct{}),
	}
	p.dir = cfg.Dir
	release := func() error { return nil }
	if p.dir == "" {
		sweepStaleWorkDirs(cfg.Logger)
		d, rel, err := makeWorkDir()
		if err != nil {
			return nil, fmt.Errorf("proxy: working directory: %w", err)
		}
		p.dir, release = d, rel
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		_ = release()
		return nil, fmt.Errorf("proxy: pipe: %w", err)
	}
	p.cmd = exec.Command(cfg.Binary, cfg.args()...)
	p.cmd.Dir = p.dir
	p.cmd.Stdout = pw
	p.cmd.Stderr = pw
	p.cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group, so that signals reach whatever the proxy
		// runs besides itself. rethinkdb 2.4 also forks an extproc
		// "spawner" with the same command line; that one moves to a
		// group of its own (setpgid(0, 0) in extproc_spawner.cc) and
		// exits as soon as its socket to the proxy closes, i.e. when the
		// proxy is gone, however it died.
		Setpgid: true,
		// Kill the proxy if the agent dies. Pdeathsig fires when the OS
		// *thread* that forked the child exits, not the process, and the Go
		// runtime may retire threads. So the goroutine that calls Start
		// locks its thread and keeps it until Wait has returned (see run).
		// The spawner follows the proxy out (see above).
		Pdeathsig: syscall.SIGKILL,
	}

	started := make(chan error, 1)
	readerDone := make(chan struct{})
	go p.run(started, pw, release, readerDone)
	if err := <-started; err != nil {
		_ = pr.Close()
		return nil, fmt.Errorf("proxy: start %s: %w", cfg.Binary, err)
	}
	go p.readOutput(pr, readerDone)
	go p.watchdog(ctx)

	t := time.NewTimer(cfg.ReadyTimeout)
	defer t.Stop()
	select {
	case <-p.ready:
		p.log.Info("proxy ready", "id", p.id, "cluster_port", p.clusterPort, "driver_port", p.driverPort)
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("proxy exited before it was ready: %w", p.err)
	case <-t.C:
		p.requestStop(fmt.Errorf("not ready after %s", cfg.ReadyTimeout))
	case <-ctx.Done():
		// the watchdog stops it
	}
	<-p.done
	return nil, fmt.Errorf("proxy not ready: %w", p.err)
}

// run owns the process: it starts it and is the only caller of Wait. It holds
// its OS thread for the child's whole life because of Pdeathsig.
func (p *Proxy) run(started chan<- error, pw *os.File, release func() error, readerDone <-chan struct{}) {
	runtime.LockOSThread()
	// The thread is released only after the child is gone; exiting with
	// it locked would make the runtime retire the thread, which is fine too,
	// but unlocking keeps the thread pool small.
	defer runtime.UnlockOSThread()

	err := p.cmd.Start()
	_ = pw.Close() // the child has its copy; EOF comes when the group is gone
	if err != nil {
		_ = release()
		started <- err
		return
	}
	p.pgid = p.cmd.Process.Pid
	p.log = p.log.With("proxy_pid", p.pgid)
	started <- nil

	waitErr := p.cmd.Wait()
	// The leader is gone; kill whatever it left in its group. ESRCH just
	// means nothing was left.
	_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
	// The reader ends at EOF, once every holder of the pipe has exited.
	select {
	case <-readerDone:
	case <-time.After(5 * time.Second):
		p.log.Warn("proxy output still open after exit; a process escaped its group?")
	}
	if err := release(); err != nil {
		p.log.Warn("remove proxy working directory", "dir", p.dir, "err", err)
	}

	p.reasonMu.Lock()
	reason := p.reason
	p.reasonMu.Unlock()
	switch {
	case errors.Is(reason, errStopRequested):
		p.err = nil
	case reason != nil:
		p.err = fmt.Errorf("%w (%v); last output:\n%s", reason, waitErr, p.tailString())
	case waitErr != nil:
		p.err = fmt.Errorf("proxy exited: %w; last output:\n%s", waitErr, p.tailString())
	default:
		p.err = fmt.Errorf("proxy exited on its own; last output:\n%s", p.tailString())
	}
	p.log.Info("proxy stopped", "exit", waitErr, "reason", reason)
	close(p.done)
}

// readOutput logs every line at debug level, keeps the tail for error
// messages, and parses the ports and the ready line.
func (p *Proxy) readOutput(r io.ReadCloser, done chan<- struct{}) {
	defer close(done)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	isReady := false
	for sc.Scan() {
		line := redactPassword(strings.TrimRight(sc.Text(), "\r"))
		p.log.Debug("proxy output", "line", line)
		p.tailMu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > tailLines {
			p.tail = p.tail[len(p.tail)-tailLines:]
		}
		p.tailMu.Unlock()
		if isReady {
			continue
		}
		if m := reIntracluster.FindStringSubmatch(line); m != nil {
			p.clusterPort, _ = strconv.Atoi(m[1])
		} else if m := reDriver.FindStringSubmatch(line); m != nil {
			p.driverPort, _ = strconv.Atoi(m[1])
		} else if m := reReady.FindStringSubmatch(line); m != nil {
			if p.clusterPort == 0 || p.driverPort == 0 {
				p.requestStop(errors.New("proxy said it was ready without reporting its cluster and driver ports"))
				continue
			}
			p.id = m[1]
			isReady = true
			close(p.ready)
		}
	}
	// Drain anything after a scanner error so the child never blocks on a
	// full pipe.
	_, _ = io.Copy(io.Discard, r)
}

// generatedPassword starts the line rethinkdb prints for
// `--initial-password auto` (parse_initial_password_option in
// src/clustering/administration/main/command_line.cc). The proxy's random
// admin password must not reach the agent's logs or errors.
const generatedPassword = "Generated random admin password: "

func redactPassword(line string) string {
	if i := strings.Index(line, generatedPassword); i >= 0 {
		return line[:i+len(generatedPassword)] + "REDACTED"
	}
	return line
}

func (p *Proxy) tailString() string {
	p.tailMu.Lock()
	defer p.tailMu.Unlock()
	return strings.Join(p.tail, "\n")
}

// watchdog turns stop requests, ctx cancellation and MaxLifetime into the
// SIGTERM, wait, SIGKILL sequence. It ends when the process is gone.
func (p *Proxy) watchdog(ctx context.Context) {
	life := time.NewTimer(p.cfg.MaxLifetime)
	defer life.Stop()
	select {
	case <-p.done:
		return
	case <-p.stopReq:
	case <-ctx.Done():
		p.setReason(fmt.Errorf("context ended: %w", ctx.Err()))
		p.log.Info("stopping proxy: context ended")
	case <-life.C:
		p.setReason(fmt.Errorf("%w (%s)", ErrMaxLifetime, p.cfg.MaxLifetime))
		p.log.Warn("stopping proxy: it reached its maximum lifetime", "max_lifetime", p.cfg.MaxLifetime)
	}
	// Signal the group: the helper process shares the command line and
	// must go too.
	if err := syscall.Kill(-p.pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.log.Warn("SIGTERM proxy group", "pgid", p.pgid, "err", err)
	}
	t := time.NewTimer(p.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	}
	p.log.Warn("proxy did not exit after SIGTERM; killing it", "stop_timeout", p.cfg.StopTimeout)
	if err := syscall.Kill(-p.pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.log.Warn("SIGKILL proxy group", "pgid", p.pgid, "err", err)
	}
	<-p.done
}

func (p *Proxy) setReason(err error) {
	p.reasonMu.Lock()
	defer p.reasonMu.Unlock()
	if p.reason == nil {
		p.reason = err
	}
}

func (p *Proxy) requestStop(reason error) {
	p.setReason(reason)
	p.stopOnce.Do(func() { close(p.stopReq) })
}

// ID returns "proxy-<uuid>", the key the proxy has in the servers'
// server_status.network.connected_to.
func (p *Proxy) ID() string { return p.id }

// ClusterPort is the port the proxy listens on for intracluster connections.
func (p *Proxy) ClusterPort() int { return p.clusterPort }

// DriverPort is the port the proxy listens on for client drivers.
func (p *Proxy) DriverPort() int { return p.driverPort }

// Pid is the proxy's process id (also its process group id).
func (p *Proxy) Pid() int { return p.pgid }

// Done is closed once the proxy and its process group are gone.
func (p *Proxy) Done() <-chan struct{} { return p.done }

// Err says why the proxy ended: nil while it runs and after Stop, wraps
// ErrMaxLifetime or the context's error when those stopped it, and otherwise
// describes the unexpected exit with the tail of its output.
func (p *Proxy) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Stop sends SIGTERM to the proxy's process group, and SIGKILL after
// StopTimeout, and waits until it is gone or ctx ends. If ctx ends first the
// stop still completes in the background. Stop is idempotent and safe to call
// from several goroutines.
func (p *Proxy) Stop(ctx context.Context) error {
	p.requestStop(errStopRequested)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping proxy %s: %w", p.id, ctx.Err())
	}
}
