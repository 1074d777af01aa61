package proxy

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
)

// One test against the real thing as far as we have it: the e2e harness's
// binary (RETHINKDB_BIN, a real rethinkdb, if set; else rethinkdb-sim) runs
// our proxy, joined to a server the harness started.
func TestSimProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	h := harness.New(t)
	s := h.StartServer(harness.ServerOptions{Name: "s1"})
	p, err := Start(context.Background(), Config{
		Binary: harness.Binary(t),
		Joins:  []string{s.ClusterAddr()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^proxy-[0-9a-f-]{36}$`).MatchString(p.ID()) || p.ClusterPort() == 0 || p.DriverPort() == 0 {
		t.Errorf("id %q ports %d/%d", p.ID(), p.ClusterPort(), p.DriverPort())
	}
	s.WaitLog(t, "Connected to proxy "+p.ID(), 10*time.Second)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, p)
	if p.Err() != nil {
		t.Errorf("Err = %v", p.Err())
	}
}
