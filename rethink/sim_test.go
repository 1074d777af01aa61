package rethink

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Integration tests run against rethinkdb-sim, built once from
// ../cmd/rethinkdb-sim. RETHINKDB_SIM=/path uses a prebuilt binary instead.
// If it cannot be built the tests are skipped, loudly.

var (
	simOnce sync.Once
	simPath string
	simErr  error
	simDir  string
)

func simBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	simOnce.Do(func() {
		if p := os.Getenv("RETHINKDB_SIM"); p != "" {
			simPath = p
			return
		}
		simDir, simErr = os.MkdirTemp("", "rethink-sim-bin-")
		if simErr != nil {
			return
		}
		simPath = filepath.Join(simDir, "rethinkdb-sim")
		cmd := exec.Command("go", "build", "-o", simPath, "./cmd/rethinkdb-sim")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			simErr = fmt.Errorf("go build ./cmd/rethinkdb-sim: %v\n%s", err, out)
		}
	})
	if simErr != nil {
		msg := fmt.Sprintf("\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"+
			"!!! SKIPPING rethink integration test: cannot build rethinkdb-sim: %v\n"+
			"!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", simErr)
		fmt.Fprintln(os.Stderr, msg)
		t.Skip(msg)
	}
	return simPath
}

// simProc is one running sim server or proxy.
type simProc struct {
	cmd         *exec.Cmd
	ClusterPort int
	DriverPort  int
	ID          string // server uuid, or proxy-<uuid>
	mu          sync.Mutex
	out         strings.Builder
	done        chan struct{}
}

func (p *simProc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *simProc) ClusterAddr() string { return "127.0.0.1:" + strconv.Itoa(p.ClusterPort) }
func (p *simProc) DriverAddr() string  { return "127.0.0.1:" + strconv.Itoa(p.DriverPort) }

var (
	reCluster     = regexp.MustCompile(`^Listening for intracluster connections on port (\d+)`)
	reDriverPort  = regexp.MustCompile(`^Listening for client driver connections on port (\d+)`)
	reServerReady = regexp.MustCompile(`^Server ready, "[^"]*" ([0-9a-f-]+)`)
	reProxyReady  = regexp.MustCompile(`^Proxy ready, (proxy-[0-9a-f-]+)`)
)

// startSim runs the sim with args (after a server's -d or "proxy") on free
// ports and waits until it is ready.
func startSim(t *testing.T, args ...string) *simProc {
	t.Helper()
	bin := simBinary(t)
	args = append(args, "--bind", "127.0.0.1", "--cluster-port", "0", "--driver-port", "0", "--no-http-admin")
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &simProc{cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		isReady := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			if m := reCluster.FindStringSubmatch(line); m != nil {
				p.ClusterPort, _ = strconv.Atoi(m[1])
			} else if m := reDriverPort.FindStringSubmatch(line); m != nil {
				p.DriverPort, _ = strconv.Atoi(m[1])
			} else if m := reServerReady.FindStringSubmatch(line); m != nil && !isReady {
				p.ID, isReady = m[1], true
				close(ready)
			} else if m := reProxyReady.FindStringSubmatch(line); m != nil && !isReady {
				p.ID, isReady = m[1], true
				close(ready)
			}
			p.mu.Unlock()
		}
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case <-ready:
	case <-p.done:
		t.Fatalf("sim %v exited before ready:\n%s", args, p.Output())
	case <-time.After(20 * time.Second):
		t.Fatalf("sim %v not ready:\n%s", args, p.Output())
	}
	return p
}

func (p *simProc) stop(t *testing.T) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

func startServer(t *testing.T, name string, extra ...string) *simProc {
	t.Helper()
	return startSim(t, append([]string{"-d", filepath.Join(t.TempDir(), name), "--server-name", name}, extra...)...)
}

func dialSim(t *testing.T, p *simProc) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, Options{Address: p.DriverAddr(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("dial %s: %v\n%s", p.DriverAddr(), err, p.Output())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %s", d, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
