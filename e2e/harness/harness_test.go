package harness

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEnv); mode != "" {
		fakeRethinkdb(mode)
		return
	}
	goleak.VerifyTestMain(m)
}

// fakeEnv makes the test binary a stand-in for a real rethinkdb's process
// tree (src/extproc/extproc_spawner.cc in v2.4.4): the server forks a
// "spawner" that takes a process group of its own, keeps the server's
// stdout, and exits when its socket to the server closes; the server closes
// that socket and waits for the spawner when it shuts down on SIGTERM.
const fakeEnv = "HARNESS_FAKE_RETHINKDB"

func fakeRethinkdb(mode string) {
	if mode == "spawner" {
		// Blocks until every writer of the socket (the server) is gone.
		_, _ = io.Copy(io.Discard, os.NewFile(3, "socket"))
		fmt.Println("spawner: socket closed, exiting")
		os.Exit(0)
	}
	sock, keep, err := os.Pipe()
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	spawner := exec.Command(os.Args[0])
	spawner.Env = append(os.Environ(), fakeEnv+"=spawner")
	spawner.Stdout, spawner.Stderr = os.Stdout, os.Stderr
	spawner.ExtraFiles = []*os.File{sock}
	spawner.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // setpgid(0, 0)
	if err := spawner.Start(); err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	sock.Close()
	fmt.Printf("spawner %d\n", spawner.Process.Pid)
	fmt.Println(`Server ready, "fake" 01c87574-ce6d-4611-8aaf-6286633dd822`)
	<-term
	fmt.Println("Server got SIGTERM from pid 1, uid 0; shutting down...")
	keep.Close()
	_ = spawner.Wait()
	fmt.Println("Storage engine shut down.")
	os.Exit(0)
}

// gone reports whether pid has exited (a zombie counts as exited: in a
// container nobody may reap a reparented child).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] == "Z"
}

func TestProcessOutputAndStop(t *testing.T) {
	c := &Cluster{t: t, names: map[string]int{}}
	p := c.StartProcess("sh", "/bin/sh", "-c", `echo hello; echo "Listening on port 4242" >&2; exec sleep 100`)
	if line := p.WaitLog(t, "hello", 10*time.Second); line != "hello" {
		t.Errorf("WaitLog line %q", line)
	}
	m := p.WaitLogMatch(t, regexp.MustCompile(`port (\d+)$`), 10*time.Second)
	if m[1] != "4242" {
		t.Errorf("WaitLogMatch %q", m)
	}
	if !p.Stop() {
		t.Error("sleep did not stop on SIGTERM")
	}
	if p.Running() || p.ExitCode() != -1 {
		t.Errorf("after Stop: running %v, exit code %d", p.Running(), p.ExitCode())
	}
	if got := p.Output(); got != "hello\nListening on port 4242\n" {
		t.Errorf("output %q", got)
	}
	log, err := os.ReadFile(p.LogPath)
	if err != nil || string(log) != p.Output() {
		t.Errorf("log file %q (%v), want the output", log, err)
	}
}

func TestStopKillsAGroupThatIgnoresSIGTERM(t *testing.T) {
	c := &Cluster{t: t, names: map[string]int{}}
	// The shell forks a child that stays in its group; both ignore SIGTERM.
	// (A real rethinkdb's spawner leaves the group: TestRealisticSpawner.)
	p := c.StartProcess("stubborn", "/bin/sh", "-c", `trap "" TERM; sleep 100 & echo child $!; wait`)
	m := p.WaitLogMatch(t, regexp.MustCompile(`^child (\d+)$`), 10*time.Second)
	child, _ := strconv.Atoi(m[1])
	if p.StopWithin(200 * time.Millisecond) {
		t.Error("StopWithin reports a clean exit for a process that ignores SIGTERM")
	}
	if !gone(p.Pid()) {
		t.Error("the process survived")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !gone(child) {
		if time.Now().After(deadline) {
			t.Fatalf("the forked child %d survived the group kill", child)
		}
		time.Sleep(10 * time.Millisecond) // polling a pid: no event to wait on
	}
}

func TestWaitLogReportsAnEarlyExit(t *testing.T) {
	c := &Cluster{t: t, names: map[string]int{}}
	p := c.StartProcess("short", "/bin/sh", "-c", `echo bye`)
	_, err := p.awaitOutput("never", 10*time.Second, func(string) []string { return nil })
	var ee *exitedError
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "bye") {
		t.Errorf("error %v, want an exitedError quoting the output", err)
	}
}

func TestRunCommand(t *testing.T) {
	out, code := RunCommand(t, 10*time.Second, "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
	if out != "out\nerr\n" || code != 3 {
		t.Errorf("RunCommand: %q, exit %d", out, code)
	}
}

func TestCleanupKillsEverything(t *testing.T) {
	var p *Process
	t.Run("inner", func(t *testing.T) {
		c := &Cluster{t: t, names: map[string]int{}}
		p = c.StartProcess("sleeper", "/bin/sleep", "100")
		if c.StartProcess("sleeper", "/bin/sleep", "100").Name != "sleeper#2" {
			t.Error("names are not made unique")
		}
	})
	if p.Running() {
		t.Error("the process outlived its test")
	}
	if left := killAll(); len(left) != 0 {
		t.Errorf("left running: %v", left)
	}
}

func TestFreePortsAreDistinct(t *testing.T) {
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		p := freePort()
		if seen[p] || p <= 0 {
			t.Fatalf("port %d handed out twice (or invalid)", p)
		}
		seen[p] = true
	}
}

func TestWaitLogSeesOnlyWholeLines(t *testing.T) {
	c := &Cluster{t: t, names: map[string]int{}}
	p := c.StartProcess("slow", "/bin/sh", "-c", `printf "port 4"; sleep 0.3; printf "003\n"; exec sleep 100`)
	m := p.WaitLogMatch(t, regexp.MustCompile(`port (\d+)$`), 10*time.Second)
	if m[1] != "4003" {
		t.Errorf("matched a partial line: %q", m)
	}
}

func TestFailedTestLogsAreSaved(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("E2E_LOG_DIR", dir)
	p := &Process{Name: "server_1#2", out: newLogBuffer(nil)}
	_, _ = p.out.Write([]byte("Server ready\n"))
	saveLog(t, dir, p)
	b, err := os.ReadFile(dir + "/" + strings.ReplaceAll(t.Name(), "/", "_") + "/server_1_2.log")
	if err != nil || string(b) != "Server ready\n" {
		t.Errorf("saved log %q, %v", b, err)
	}
}

// A real server words a taken port differently per listener (see
// addrInUseRE); the start-up retry must recognise each.
func TestAddrInUseMatchesEveryListener(t *testing.T) {
	for _, line := range []string{
		"error: TCP socket creation failed for port 29015: Address already in use.",
		"error: Could not bind to RDB protocol port: The address at localhost:28015 is reserved or already in use.",
		"error: Could not bind to http port: The address at localhost:8080 is reserved or already in use.",
	} {
		if !addrInUseRE.MatchString(line) {
			t.Errorf("not recognised as a taken port: %q", line)
		}
	}
	if addrInUseRE.MatchString("Could not find bind ip address '127.0.0.11'") {
		t.Error("an absent bind address is not a taken port")
	}
}

// With a real server's process tree (see fakeEnv) Stop ends cleanly and Kill
// returns only once the spawner, outside the group, is gone as well: it holds
// the output pipe (and, for a real server, the data directory's lock).
func TestRealisticSpawner(t *testing.T) {
	t.Setenv(fakeEnv, "server")
	spawnerRE := regexp.MustCompile(`^spawner (\d+)$`)
	for _, tc := range []struct {
		name string
		end  func(*Process) bool
		want string
	}{
		{"stop", (*Process).Stop, "Storage engine shut down."},
		{"kill", func(p *Process) bool { p.Kill(); return true }, "spawner: socket closed, exiting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{t: t, names: map[string]int{}}
			p := c.StartProcess("fake", os.Args[0])
			spawner, _ := strconv.Atoi(p.WaitLogMatch(t, spawnerRE, 10*time.Second)[1])
			p.WaitLog(t, "Server ready", 10*time.Second)
			if pgid, err := syscall.Getpgid(spawner); err != nil || pgid == p.Pid() {
				t.Fatalf("the spawner's group is %d (%v), want one of its own", pgid, err)
			}
			if !tc.end(p) {
				t.Error("the server did not stop on SIGTERM")
			}
			if !strings.Contains(p.Output(), tc.want) {
				t.Errorf("output lacks %q once the process is done:\n%s", tc.want, p.Output())
			}
			if !gone(spawner) {
				t.Errorf("the spawner %d outlived its server", spawner)
			}
		})
	}
}

func TestConfigFileValue(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"s3cret-from-file", true},
		{"pass word", true},
		{"a#b", false},
		{"two\nlines", false},
		{" padded", false},
		{"padded\t", false},
	} {
		if err := configFileValue(tc.v); (err == nil) != tc.ok {
			t.Errorf("configFileValue(%q) = %v, want ok %v", tc.v, err, tc.ok)
		}
	}
}

func TestCheckBinary(t *testing.T) {
	for _, tc := range []struct {
		bin string
		ok  bool
	}{
		{"/bin/sh", true},
		{"sh", true}, // on PATH
		{"bin/rethinkdb", false},
		{"./rethinkdb", false},
		{"/nonexistent/rethinkdb", false},
	} {
		if err := checkBinary(tc.bin); (err == nil) != tc.ok {
			t.Errorf("checkBinary(%q) = %v, want ok %v", tc.bin, err, tc.ok)
		}
	}
}
