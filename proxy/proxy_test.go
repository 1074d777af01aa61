package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
	"github.com/rethinkdb-agent/rethinkdb-agent/internal/testutil"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEnv); mode != "" {
		fakeMain(mode)
		return
	}
	// Race-built fakes would otherwise sleep 1s at exit.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	// harness.Runner kills and reports servers a test left running, and
	// removes the simulator it built; goleak then checks our goroutines.
	goleak.VerifyTestMain(harness.Runner(m))
}

func fakeConfig(t *testing.T, mode string) (Config, *testutil.SyncBuffer) {
	t.Helper()
	t.Setenv(fakeEnv, mode)
	logs := &testutil.SyncBuffer{}
	return Config{
		Binary:       os.Args[0],
		Joins:        []string{"127.0.0.1:4000", "[::1]:4002"},
		ReadyTimeout: 10 * time.Second,
		StopTimeout:  5 * time.Second,
		Logger:       slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, logs
}

// groupAlive lists the live (non-zombie) processes of process group pgid.
func groupAlive(pgid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after "(comm)": state ppid pgrp ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func waitGone(t *testing.T, p *Proxy) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("proxy not done")
	}
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		alive := groupAlive(p.Pid())
		return len(alive) == 0, fmt.Sprintf("processes left in group %d: %v", p.Pid(), alive)
	})
	if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
		t.Errorf("working directory %s not removed: %v", p.dir, err)
	}
}

func TestReadyAndStop(t *testing.T) {
	cfg, logs := fakeConfig(t, "ready")
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != fakeID || p.ClusterPort() != 40747 || p.DriverPort() != 41235 {
		t.Errorf("id %q cluster %d driver %d", p.ID(), p.ClusterPort(), p.DriverPort())
	}
	// The helper, like rethinkdb's spawner, is outside the proxy's group.
	m := regexp.MustCompile(`spawner (\d+)`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("the fake did not say its helper's pid:\n%s", logs.String())
	}
	helper, _ := strconv.Atoi(m[1])
	if pgid, err := syscall.Getpgid(helper); err != nil || pgid == p.Pid() {
		t.Errorf("helper %d in group %d (%v), want a group of its own as the real spawner", helper, pgid, err)
	}
	if p.Err() != nil {
		t.Errorf("Err while running = %v", p.Err())
	}
	// Concurrent and repeated Stops all succeed.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := p.Stop(context.Background()); err != nil {
				t.Errorf("Stop: %v", err)
			}
		})
	}
	wg.Wait()
	waitGone(t, p)
	// Stopping the proxy's group ends the helper too, through its socket.
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		return !alive(helper), fmt.Sprintf("the helper %d outlived the proxy", helper)
	})
	if err := p.Stop(context.Background()); err != nil || p.Err() != nil {
		t.Errorf("after stop: Stop %v, Err %v", err, p.Err())
	}
	out := logs.String()
	for _, want := range []string{"Proxy ready, " + fakeID, "Server got SIGTERM", "proxy_pid="} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestSIGKILLAfterStopTimeout(t *testing.T) {
	cfg, logs := fakeConfig(t, "ignoreterm")
	cfg.StopTimeout = 200 * time.Millisecond
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, p)
	if p.Err() != nil {
		t.Errorf("Err = %v", p.Err())
	}
	if !strings.Contains(logs.String(), "did not exit after SIGTERM") {
		t.Errorf("no SIGKILL log:\n%s", logs.String())
	}
}

func TestStopContextExpires(t *testing.T) {
	cfg, _ := fakeConfig(t, "ignoreterm")
	cfg.StopTimeout = 300 * time.Millisecond
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Stop(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Stop with a done ctx = %v", err)
	}
	// The stop completes in the background anyway.
	waitGone(t, p)
}

func TestExitBeforeReady(t *testing.T) {
	cfg, _ := fakeConfig(t, "exit")
	p, err := Start(context.Background(), cfg)
	if err == nil {
		p.Stop(context.Background())
		t.Fatal("Start succeeded")
	}
	for _, want := range []string{"exited before it was ready", "exit status 1", "Error: boom, cannot join", "intracluster"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestReadyTimeout(t *testing.T) {
	cfg, _ := fakeConfig(t, "neverready")
	cfg.ReadyTimeout = 300 * time.Millisecond
	_, err := Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "not ready after 300ms") || !strings.Contains(err.Error(), "Listening on driver addresses") {
		t.Fatalf("err = %v", err)
	}
}

func TestReadyWithoutPorts(t *testing.T) {
	cfg, _ := fakeConfig(t, "noports")
	_, err := Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "without reporting its cluster and driver ports") {
		t.Fatalf("err = %v", err)
	}
}

func TestContextCancelStops(t *testing.T) {
	cfg, _ := fakeConfig(t, "ready")
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitGone(t, p)
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("Err = %v", err)
	}
}

func TestContextCancelBeforeReady(t *testing.T) {
	cfg, _ := fakeConfig(t, "neverready")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Start(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Fatalf("err = %v", err)
	}
}

func TestMaxLifetime(t *testing.T) {
	cfg, logs := fakeConfig(t, "ready")
	cfg.MaxLifetime = 500 * time.Millisecond
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, p)
	if !errors.Is(p.Err(), ErrMaxLifetime) {
		t.Errorf("Err = %v", p.Err())
	}
	if !strings.Contains(logs.String(), "maximum lifetime") {
		t.Errorf("no lifetime log:\n%s", logs.String())
	}
}

func TestUserDir(t *testing.T) {
	cfg, _ := fakeConfig(t, "ready")
	cfg.Dir = t.TempDir()
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Dir); err != nil {
		t.Errorf("caller's Dir removed: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no joins", Config{}, "no --join"},
		{"host name", Config{Joins: []string{"server1:29015"}}, `"server1" is not an IP address`},
		{"no port", Config{Joins: []string{"10.0.0.1"}}, `join address "10.0.0.1"`},
		{"bad port", Config{Joins: []string{"10.0.0.1:99999"}}, `bad port "99999"`},
		{"bad bind", Config{Joins: []string{"10.0.0.1:29015"}, Bind: "localhost"}, `bind address "localhost"`},
		{"partial tls", Config{Joins: []string{"10.0.0.1:29015"}, ClusterTLSKey: "k"}, "must be given together"},
		{"missing binary", Config{Joins: []string{"10.0.0.1:29015"}, Binary: "/nonexistent/rethinkdb"}, "/nonexistent/rethinkdb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	cfg := Config{
		Joins:            []string{"10.0.0.1:29015", "[fd00::2]:29015"},
		CanonicalAddress: "10.0.0.9",
		ClusterTLSKey:    "k.pem", ClusterTLSCert: "c.pem", ClusterTLSCA: "ca.pem",
		InitialPasswordAuto: true,
	}
	cfg.setDefaults()
	want := []string{"proxy", "--bind", "127.0.0.1", "--cluster-port", "0", "--driver-port", "0", "--no-http-admin",
		"--join", "10.0.0.1:29015", "--join", "[fd00::2]:29015", "--canonical-address", "10.0.0.9",
		"--cluster-tls-key", "k.pem", "--cluster-tls-cert", "c.pem", "--cluster-tls-ca", "ca.pem",
		"--initial-password", "auto"}
	if got := cfg.args(); !slices.Equal(got, want) {
		t.Errorf("args =\n%q\nwant\n%q", got, want)
	}
}

func TestSweepStaleWorkDirs(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	old := time.Now().Add(-2 * staleAge)

	// A live proxy's directory: locked by us (an old lock file does not
	// make it stale).
	live, release, err := makeWorkDir()
	if err != nil {
		t.Fatal(err)
	}
	// A directory whose agent died: lock file present, unlocked, old.
	dead := filepath.Join(os.TempDir(), dirPrefix+"dead")
	if err := os.Mkdir(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, lockName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dead, "log_file"), []byte("x"), 0o600)
	young := filepath.Join(os.TempDir(), dirPrefix+"young")
	os.Mkdir(young, 0o700)
	os.WriteFile(filepath.Join(young, lockName), nil, 0o600)
	foreign := filepath.Join(os.TempDir(), dirPrefix+"nolock")
	os.Mkdir(foreign, 0o700)
	for _, d := range []string{live, dead} {
		if err := os.Chtimes(filepath.Join(d, lockName), old, old); err != nil {
			t.Fatal(err)
		}
	}

	sweepStaleWorkDirs(slog.New(slog.DiscardHandler))

	exists := func(d string) bool { _, err := os.Stat(d); return err == nil }
	if exists(dead) {
		t.Error("stale directory not removed")
	}
	if !exists(live) {
		t.Error("a locked (live) directory was removed")
	}
	if !exists(young) || !exists(foreign) {
		t.Error("a young or lock-less directory was removed")
	}
	if err := release(); err != nil || exists(live) {
		t.Errorf("release: %v, exists %v", err, exists(live))
	}
}

// With --initial-password auto a real proxy prints the random password it
// generated; neither the debug log nor an error may carry it.
func TestGeneratedPasswordRedacted(t *testing.T) {
	for _, mode := range []string{"ready", "exit"} {
		t.Run(mode, func(t *testing.T) {
			cfg, logs := fakeConfig(t, mode)
			cfg.InitialPasswordAuto = true
			p, err := Start(context.Background(), cfg)
			if err == nil {
				if err := p.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
				waitGone(t, p)
			}
			out := logs.String()
			if err != nil {
				out += err.Error()
			}
			if strings.Contains(out, fakePassword) {
				t.Errorf("the generated password leaked:\n%s", out)
			}
			if !strings.Contains(out, "Generated random admin password: REDACTED") {
				t.Errorf("want the redacted line in the output:\n%s", out)
			}
		})
	}
}
