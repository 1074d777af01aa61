package rethink

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
)

// harness.Runner kills and reports servers a test left running, and removes
// the simulator it built; goleak then checks our own goroutines.
func TestMain(m *testing.M) { goleak.VerifyTestMain(harness.Runner(m)) }
