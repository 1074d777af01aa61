// Command rethinkdb-sim stands in for a rethinkdb 2.4.4 server in tests: it
// accepts the same command lines and speaks the same protocols. It is
// test-only; the agent never imports it.
package main

import (
	"os"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, os.Stdout, os.Stderr))
}
