package rethink

import (
	"context"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
)

// Integration tests run against the e2e harness's binary: RETHINKDB_BIN (a
// real rethinkdb 2.4.4) if set, else RETHINKDB_SIM, else rethinkdb-sim
// built once from ./cmd/rethinkdb-sim.

// newCluster returns a harness cluster for t, or skips t in -short mode.
func newCluster(t *testing.T) *harness.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	return harness.New(t)
}

// dialSim connects a Client to n's driver port, closed at cleanup.
func dialSim(t *testing.T, n *harness.Node) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, Options{Address: n.DriverAddr(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("dial %s: %v\n%s", n.DriverAddr(), err, n.Output())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitView polls c's View until cond holds for it, and returns that View.
// The test fails at the timeout with cond's message, or the View error.
func waitView(ctx context.Context, t *testing.T, c *Client, timeout time.Duration, cond func(View) (bool, string)) View {
	t.Helper()
	var v View
	harness.Eventually(t, timeout, func() (bool, string) {
		var err error
		if v, err = c.View(ctx); err != nil {
			return false, err.Error()
		}
		return cond(v)
	})
	return v
}
