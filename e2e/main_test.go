// Package e2e holds the end-to-end scenarios. They run against
// rethinkdb-sim by default and against a real rethinkdb 2.4.4 when
// RETHINKDB_BIN is set, unchanged: they use only what the recordings in
// testdata/rethinkdb-2.4.4 show a real server doing.
package e2e

import (
	"testing"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
