// Package cli is the command line of rethinkdb-sim. It accepts the
// command lines of rethinkdb 2.4.4 (porcelain `rethinkdb [options]`, `serve`,
// `proxy`, `create`, `help`, `--version`) and refuses bad ones with the real
// server's messages and exit codes, then runs a node.
//
// Division of the log with package node: the node prints every log line,
// from "Initializing directory …" to "Storage engine shut down."; on
// SIGTERM/SIGINT the cli cancels the node's context with the cause "Server
// got SIGTERM from pid N, uid N; shutting down...", which the node logs first.
// Errors in the command line are the cli's alone.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/node"
)

// Version is the first line of `rethinkdb --version` of the recorded server.
// The simulator prints exactly the same, so tools that parse the version
// (the agent, scripts) work unchanged against it.
const Version = "rethinkdb 2.4.4 (x86_64-linux-gnu) (GCC 12.2.0)"

// deps is what Main takes from the process; tests replace it.
type deps struct {
	env     env
	signals <-chan os.Signal
	run     func(context.Context, node.Config) error
	ppid    func() int
	uid     func() int
	uname   func() string
}

// Main runs the command line args (args[0] is the program) and returns the
// exit code. Logs go to stdout, errors to stderr, as with the real server.
func Main(args []string, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	d := deps{
		env:     osEnv(func(s string) { fmt.Fprintln(stderr, s) }, func(s string) { fmt.Fprintln(stdout, s) }),
		signals: sigs,
		run:     node.Run,
		ppid:    os.Getppid,
		uid:     os.Getuid,
		uname:   uname,
	}
	return mainWith(context.Background(), args, stdout, stderr, d)
}

func mainWith(ctx context.Context, args []string, stdout, stderr io.Writer, d deps) int {
	if len(args) == 0 {
		args = []string{"rethinkdb"}
	}
	if len(args) == 1 || strings.HasPrefix(args[1], "-") && !isHelpOrVersionFlag(args[1]) {
		return runCommand(ctx, cmdPorcelain, args[1:], args, stdout, stderr, d)
	}
	switch sub := args[1]; sub {
	case "create":
		return runCommand(ctx, cmdCreate, args[2:], args, stdout, stderr, d)
	case "serve":
		return runCommand(ctx, cmdServe, args[2:], args, stdout, stderr, d)
	case "proxy":
		return runCommand(ctx, cmdProxy, args[2:], args, stdout, stderr, d)
	case "export", "import", "dump", "restore", "index-rebuild", "repl":
		fmt.Fprintf(stderr, "rethinkdb-sim: 'rethinkdb %s' runs a Python script in the real server; the simulator does not provide it.\n", sub)
		return 1
	case "--version", "-v":
		if len(args) != 2 {
			fmt.Fprintf(stdout, "WARNING: Ignoring extra parameters after '%s'.", sub)
		}
		printVersion(stdout, d)
		return 0
	case "help", "-h", "--help":
		switch len(args) {
		case 2:
			fmt.Fprint(stdout, helpText(cmdPorcelain))
			return 0
		case 3:
			cmds := map[string]command{"create": cmdCreate, "serve": cmdServe, "proxy": cmdProxy}
			if c, ok := cmds[args[2]]; ok {
				fmt.Fprint(stdout, helpText(c))
				return 0
			}
			fmt.Fprintf(stdout, "ERROR: No help for '%s'\n", args[2])
			return 1
		default:
			fmt.Fprintln(stdout, "ERROR: Too many parameters to 'rethinkdb help'.  Try 'rethinkdb help [subcommand]'.")
			return 1
		}
	default:
		fmt.Fprintf(stdout, "ERROR: Unrecognized subcommand '%s'. Try 'rethinkdb help'.\n", sub)
		return 1
	}
}

func isHelpOrVersionFlag(s string) bool {
	return s == "--version" || s == "-v" || s == "--help" || s == "-h"
}

func printVersion(w io.Writer, d deps) {
	fmt.Fprintln(w, Version)
	fmt.Fprintln(w, d.uname())
}

// reportError prints err the way the real server does and returns exit code 1.
func reportError(w io.Writer, cmd command, err error) int {
	var oe *optionError
	if errors.As(err, &oe) {
		fmt.Fprintf(w, "Error in %s: %s\n", oe.source, oe.msg)
		if oe.option != "" {
			fmt.Fprint(w, usageFor(cmd, oe.option))
		}
		fmt.Fprintf(w, "Run 'rethinkdb help%s' for help on the command\n", helpCommandName(cmd))
		return 1
	}
	fmt.Fprintln(w, err.Error())
	return 1
}

// prepare parses and checks a command line without side effects. It returns
// the invocation, or (nil, 0) when help or the version was printed.
func prepare(cmd command, args, argv []string, stdout io.Writer, d deps) (*invocation, error) {
	specs := optionsFor(cmd)
	p, err := parseAll(args, specs, d.env.warn)
	if err != nil {
		return nil, err
	}
	if p.has("--help") {
		fmt.Fprint(stdout, helpText(cmd))
		return nil, nil
	}
	if p.has("--version") {
		printVersion(stdout, d)
		return nil, nil
	}
	if err := verifyCounts(specs, p); err != nil {
		return nil, err
	}
	return resolve(cmd, p, argv, d.env)
}

func runCommand(ctx context.Context, cmd command, args, argv []string, stdout, stderr io.Writer, d deps) int {
	inv, err := prepare(cmd, args, argv, stdout, d)
	if err != nil {
		return reportError(stderr, cmd, err)
	}
	if inv == nil {
		return 0
	}
	if inv.daemon {
		fmt.Fprintln(stderr, "rethinkdb-sim: --daemon is not supported: the simulator never daemonizes. "+
			"Run it in the foreground (as a child process) instead.")
		return 1
	}
	cfg := inv.cfg

	logPath := inv.logFile
	if logPath == "" {
		logPath = filepath.Join(cfg.Directory, "log_file")
		if cmd == cmdProxy {
			// The real proxy logs into its working directory.
			wd, _ := d.env.getwd()
			logPath = filepath.Join(wd, "log_file")
		}
	}
	// The node creates the data directory, so the log file is opened on the
	// first line logged after that.
	log := newLineWriter(stdout, logPath)
	defer log.Close()
	cfg.Log = log

	if inv.pidFile != "" {
		if err := os.WriteFile(inv.pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			fmt.Fprintln(stderr, "error: Writing to the specified pid-file failed.")
			return 1
		}
		defer os.Remove(inv.pidFile)
	}

	// The node prints the whole log, preamble and shutdown lines included;
	// on a signal it prints the cancel cause first, which carries the real
	// "Server got SIGTERM …" line.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var stopped sync.WaitGroup
	stopped.Add(1)
	done := make(chan struct{})
	go func() {
		defer stopped.Done()
		select {
		case sig := <-d.signals:
			name := "SIGTERM"
			if sig == syscall.SIGINT {
				name = "SIGINT"
			}
			// Go's os/signal does not expose the sender (siginfo); the
			// parent is who stops us in practice (harness, agent, shell).
			cancel(fmt.Errorf("Server got %s from pid %d, uid %d; shutting down...", name, d.ppid(), d.uid()))
		case <-done:
		}
	}()
	_, statErr := os.Stat(cfg.Directory)
	dirWasMissing := cmd != cmdProxy && errors.Is(statErr, os.ErrNotExist)
	err = d.run(ctx, cfg)
	close(done)
	stopped.Wait()
	if err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		if dirWasMissing {
			// As the real server does, a directory this run created but
			// could not bring up is removed.
			log.Close()
			_ = os.RemoveAll(cfg.Directory)
		}
		// The node's errors are the real server's last log line
		// ("error: TCP socket creation failed …" style) or a plain one.
		fmt.Fprintln(stderr, err.Error())
		return 1
	}
	return 0
}

// lineWriter serialises log lines from the node's goroutines onto stdout
// and tees them into the log file with the real log_file prefix.
type lineWriter struct {
	mu       sync.Mutex
	out      io.Writer
	filePath string
	file     *os.File
	closed   bool
	start    time.Time
}

func newLineWriter(out io.Writer, filePath string) *lineWriter {
	return &lineWriter{out: out, filePath: filePath, start: time.Now()}
}

// Close closes the log file; later lines go to stdout only.
func (w *lineWriter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.file != nil {
		_ = w.file.Close()
		w.file = nil
	}
}

func (w *lineWriter) Println(s string) { _, _ = w.Write([]byte(s + "\n")) }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	line := p
	if len(line) == 0 || line[len(line)-1] != '\n' {
		line = append(append([]byte(nil), p...), '\n')
	}
	if _, err := w.out.Write(line); err != nil {
		return 0, err
	}
	if w.file == nil && !w.closed && w.filePath != "" {
		// Best effort: the log file is a copy; stdout is what callers read.
		w.file, _ = os.OpenFile(w.filePath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	}
	if w.file != nil {
		now := time.Now()
		up := now.Sub(w.start)
		prefix := fmt.Sprintf("%s %d.%06ds notice: ", now.UTC().Format("2006-01-02T15:04:05.000000000"),
			int64(up/time.Second), int64(up%time.Second/time.Microsecond))
		_, _ = io.WriteString(w.file, prefix+string(line))
	}
	return len(p), nil
}

// uname returns `uname -msr`, e.g. "Linux 6.18.44-fc-v669 x86_64".
func uname() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "Linux unknown unknown"
	}
	str := func(a [65]int8) string {
		b := make([]byte, 0, len(a))
		for _, c := range a {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		return string(b)
	}
	return str(u.Sysname) + " " + str(u.Release) + " " + str(u.Machine)
}
