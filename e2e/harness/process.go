package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is one child process started by the harness: in its own process
// group (signalled as a group, so that whatever it runs in its group goes
// with it), killed if the test binary dies (Pdeathsig), its stdout and
// stderr captured together, in order, in memory and in a file.
//
// A real rethinkdb (server or proxy) forks an extproc spawner with the same
// command line, which moves to a process group of its own (setpgid(0, 0)),
// so group signals do not reach it; it exits as soon as its socket to the
// parent closes, on a clean shutdown (the parent waits for it) as after a
// SIGKILL (src/extproc/extproc_spawner.cc in v2.4.4). It inherits the
// parent's stdout and stderr and the flock on the data directory. Wait
// returns only once every holder of the output pipe is gone, so when a
// Process is done its spawner is gone too, and the data directory is free
// for a restart.
type Process struct {
	Name string
	Path string
	Args []string
	Dir  string // working directory
	// LogPath is the file that receives a copy of the output.
	LogPath string

	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // exit status, valid once done is closed
}

// logBuffer collects output and wakes up waiters on every write.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	file    *os.File
	changed chan struct{}
}

func newLogBuffer(file *os.File) *logBuffer {
	return &logBuffer{file: file, changed: make(chan struct{})}
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.file != nil {
		_, _ = b.file.Write(p)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// snapshot returns the output so far and a channel closed at the next write.
func (b *logBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.changed
}

// registry of every live process group, for the leftover check in Main and
// for cleanup when the test binary is interrupted.
var (
	liveMu sync.Mutex
	live   = map[int]*Process{}
)

func startProcess(name, dir, logPath, path string, args ...string) (*Process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("harness: log file for %s: %w", name, err)
	}
	p := &Process{Name: name, Path: path, Args: args, Dir: dir, LogPath: logPath,
		out: newLogBuffer(f), done: make(chan struct{})}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	// The same writer for both: exec gives the child a single pipe, so the
	// order of stdout and stderr lines is kept, as in the recordings.
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A spawner that outlived its parent would keep the output pipe open
	// and Wait blocked; it never should (see Process), but a test must not
	// hang on it: Wait gives up on the pipe this long after the exit.
	cmd.WaitDelay = spawnerGrace
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("harness: start %s (%s): %w", name, path, err)
	}
	p.cmd = cmd
	liveMu.Lock()
	live[cmd.Process.Pid] = p
	liveMu.Unlock()
	go func() {
		p.err = cmd.Wait()
		liveMu.Lock()
		delete(live, cmd.Process.Pid)
		liveMu.Unlock()
		p.out.mu.Lock()
		_ = p.out.file.Close()
		p.out.file = nil
		p.out.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (and process group id) of the child.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output is everything the process printed so far.
func (p *Process) Output() string {
	s, _ := p.out.snapshot()
	return s
}

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Running reports whether the process is still running.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExitCode is the exit code once the process has exited (-1 if killed by a
// signal or still running).
func (p *Process) ExitCode() int {
	if p.Running() {
		return -1
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// signalGroup signals the whole process group; errors (already gone) are ignored.
func (p *Process) signalGroup(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// spawnerGrace bounds how long Wait waits for the output pipe to close after
// the process exited (cmd.WaitDelay).
const spawnerGrace = 30 * time.Second

// StopTimeout is how long Stop waits after SIGTERM before SIGKILL. A real
// proxy takes about 2 s to exit after SIGTERM.
const StopTimeout = 15 * time.Second

// Stop sends SIGTERM to the process group, waits for the exit up to
// StopTimeout, then kills the group. It reports whether the process exited
// by itself.
func (p *Process) Stop() bool { return p.StopWithin(StopTimeout) }

// StopWithin is Stop with another deadline.
func (p *Process) StopWithin(timeout time.Duration) bool {
	if !p.Running() {
		return true
	}
	p.signalGroup(syscall.SIGTERM)
	select {
	case <-p.done:
		// Anything the process left in its group. (A real server's
		// spawner is in a group of its own, and already gone: see Process.)
		p.signalGroup(syscall.SIGKILL)
		return true
	case <-time.After(timeout):
	}
	p.Kill()
	return false
}

// Kill sends SIGKILL to the process group and waits for the exit.
func (p *Process) Kill() {
	p.signalGroup(syscall.SIGKILL)
	<-p.done
}

// WaitLog waits until the output contains substr and returns the line that
// holds it; the test fails at the timeout, or if the process exits first.
func (p *Process) WaitLog(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	m := p.waitOutput(t, fmt.Sprintf("%q", substr), timeout, func(out string) []string {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, substr) {
				return []string{line}
			}
		}
		return nil
	})
	return m[0]
}

// WaitLogMatch waits until a line of the output matches re and returns the
// submatches of the first such line.
func (p *Process) WaitLogMatch(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	return p.waitOutput(t, "/"+re.String()+"/", timeout, func(out string) []string {
		for _, line := range strings.Split(out, "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		}
		return nil
	})
}

func (p *Process) waitOutput(t testing.TB, what string, timeout time.Duration, find func(string) []string) []string {
	t.Helper()
	m, err := p.awaitOutput(what, timeout, find)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// awaitOutput is waitOutput without a test, for the start-up retries.
func (p *Process) awaitOutput(what string, timeout time.Duration, find func(string) []string) ([]string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		out, changed := p.out.snapshot()
		// Only whole lines: a line may arrive in pieces ("port 4" of
		// "port 4003").
		if m := find(out[:strings.LastIndex(out, "\n")+1]); m != nil {
			return m, nil
		}
		select {
		case <-changed:
		case <-p.done:
			out, _ := p.out.snapshot()
			if m := find(out); m != nil {
				return m, nil
			}
			return nil, &exitedError{fmt.Sprintf("%s exited (%v) before logging %s; its output:\n%s", p.Name, p.err, what, indent(out))}
		case <-deadline.C:
			out, _ := p.out.snapshot()
			return nil, fmt.Errorf("%s did not log %s within %v; its output:\n%s", p.Name, what, timeout, indent(out))
		}
	}
}

type exitedError struct{ msg string }

func (e *exitedError) Error() string { return e.msg }

func indent(s string) string {
	if s == "" {
		return "    (nothing)"
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// RunCommand runs a program to completion (for command-line checks) with a
// deadline, killing its process group at the end, and returns its combined
// output and exit code.
func RunCommand(t testing.TB, timeout time.Duration, path string, args ...string) (string, int) {
	t.Helper()
	dir := t.TempDir()
	p, err := startProcess(filepath.Base(path), dir, filepath.Join(dir, "output.log"), path, args...)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
		t.Fatalf("%s %s did not exit within %v; output:\n%s", path, strings.Join(args, " "), timeout, indent(p.Output()))
	}
	p.signalGroup(syscall.SIGKILL) // anything left in its group
	return p.Output(), p.ExitCode()
}

// killAll kills every process the harness started that is still running
// and returns their names.
func killAll() []string {
	liveMu.Lock()
	procs := make([]*Process, 0, len(live))
	for _, p := range live {
		procs = append(procs, p)
	}
	liveMu.Unlock()
	var names []string
	for _, p := range procs {
		names = append(names, fmt.Sprintf("%s (pid %d)", p.Name, p.Pid()))
		p.Kill()
	}
	return names
}

var _ io.Writer = (*logBuffer)(nil)
