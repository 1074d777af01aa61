package proxy

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

// One test against the real thing as far as we have it: rethinkdb-sim's
// proxy, joined to a sim server. RETHINKDB_SIM=/path uses a prebuilt binary;
// otherwise it is built from ../cmd/rethinkdb-sim, and the test is skipped
// loudly if that fails.

var (
	simOnce sync.Once
	simPath string
	simErr  error
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
		dir, err := os.MkdirTemp("", "proxy-sim-bin-")
		if err != nil {
			simErr = err
			return
		}
		simPath = filepath.Join(dir, "rethinkdb-sim")
		cmd := exec.Command("go", "build", "-o", simPath, "./cmd/rethinkdb-sim")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			simErr = fmt.Errorf("go build ./cmd/rethinkdb-sim: %v\n%s", err, out)
		}
	})
	if simErr != nil {
		msg := fmt.Sprintf("!!! SKIPPING proxy integration test: cannot build rethinkdb-sim: %v", simErr)
		fmt.Fprintln(os.Stderr, msg)
		t.Skip(msg)
	}
	return simPath
}

var reServer = regexp.MustCompile(`^Server ready, "[^"]*" ([0-9a-f-]+)`)
var reClusterPort = regexp.MustCompile(`^Listening for intracluster connections on port (\d+)`)

// startSimServer starts a sim server and returns its cluster port and a
// function that waits for a line containing s in its output.
func startSimServer(t *testing.T, bin string) (int, func(s string) bool) {
	t.Helper()
	cmd := exec.Command(bin, "-d", filepath.Join(t.TempDir(), "s1"), "--server-name", "s1",
		"--bind", "127.0.0.1", "--cluster-port", "0", "--driver-port", "0", "--no-http-admin")
	cmd.Dir = t.TempDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(exited) }()
	var mu sync.Mutex
	var out strings.Builder
	port := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		cp := 0
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := reClusterPort.FindStringSubmatch(sc.Text()); m != nil {
				cp, _ = strconv.Atoi(m[1])
			}
			if reServer.MatchString(sc.Text()) {
				port <- cp
			}
		}
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	var cp int
	select {
	case cp = <-port:
	case <-exited:
		t.Fatalf("sim server exited:\n%s", out.String())
	case <-time.After(20 * time.Second):
		t.Fatal("sim server not ready")
	}
	has := func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(out.String(), s)
	}
	return cp, has
}

func TestSimProxy(t *testing.T) {
	bin := simBinary(t)
	clusterPort, serverLog := startSimServer(t, bin)
	p, err := Start(context.Background(), Config{
		Binary: bin,
		Joins:  []string{"127.0.0.1:" + strconv.Itoa(clusterPort)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^proxy-[0-9a-f-]{36}$`).MatchString(p.ID()) || p.ClusterPort() == 0 || p.DriverPort() == 0 {
		t.Errorf("id %q ports %d/%d", p.ID(), p.ClusterPort(), p.DriverPort())
	}
	deadline := time.Now().Add(10 * time.Second)
	for !serverLog("Connected to proxy " + p.ID()) {
		if time.Now().After(deadline) {
			t.Fatal("server never saw the proxy")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, p)
	if p.Err() != nil {
		t.Errorf("Err = %v", p.Err())
	}
}
