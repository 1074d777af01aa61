package rethink

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
)

func TestMain(m *testing.M) {
	// harness.Run kills and reports servers a test left running, and
	// removes the simulator it built.
	code := harness.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
