// Command rethinkdb-agent makes RethinkDB clusters assemble themselves: it
// runs beside a rethinkdb node, discovers its peers, bridges separate
// clusters through a temporary `rethinkdb proxy` and resolves the name
// collisions that the merge created, without losing data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `rethinkdb-agent makes RethinkDB clusters assemble themselves.

Usage:
  rethinkdb-agent run [flags]     run beside a rethinkdb node (sidecar)
  rethinkdb-agent exec [flags] -- rethinkdb [ARGS...]
                                  run rethinkdb as a child (container entrypoint)
  rethinkdb-agent status [flags]  show a running agent's view (or the node's)
  rethinkdb-agent version         print the version
  rethinkdb-agent help [command]  show help

Run 'rethinkdb-agent run --help' for the flags. Every flag can also be set in
the environment as RETHINKDB_AGENT_<FLAG_NAME>, for example
RETHINKDB_AGENT_PEERS=a:29015,b:29015 or RETHINKDB_AGENT_COLLISIONS=merge.
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := runCmd(ctx, args[1:], stderr); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintln(stderr, "rethinkdb-agent run:", err)
			return 1
		}
		return 0
	case "exec":
		return execMain(args[1:], stderr)
	case "status":
		return statusMain(context.Background(), args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "--help":
		if len(args) > 1 && args[1] == "exec" {
			fmt.Fprint(stdout, execUsage)
			return 0
		}
		if len(args) > 1 && args[1] == "status" {
			_, _ = parseStatus([]string{"--help"}, stdout)
			return 0
		}
		if len(args) > 1 && args[1] == "run" {
			_ = runCmd(context.Background(), []string{"--help"}, stdout)
			return 0
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "rethinkdb-agent: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return fmt.Sprintf("rethinkdb-agent %s (%s, %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
