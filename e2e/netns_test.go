package e2e

import (
	"time"

	"testing"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// TestSeedAcrossHosts is the seed procedure with every server on its own
// host (network namespace), default ports and --bind all, as checked with
// real servers in Docker containers (shared NOTES.md): a proxy on a fourth
// host merges the clusters, and they stay merged after it stops.
// It needs root; it is skipped, saying so, otherwise.
func TestSeedAcrossHosts(t *testing.T) {
	t.Parallel()
	network := harness.NewNetwork(t)
	c := harness.New(t)
	h1, h2, h3, h4 := network.AddHost("h1"), network.AddHost("h2"), network.AddHost("h3"), network.AddHost("h4")

	s1 := c.StartServer(harness.ServerOptions{Name: "server_1", Host: h1})
	s2 := c.StartServer(harness.ServerOptions{Name: "server_2", Host: h2, Join: []*harness.Node{s1}})
	s3 := c.StartServer(harness.ServerOptions{Name: "server_3", Host: h3})
	ss1, ss2, ss3 := s1.Session(t), s2.Session(t), s3.Session(t)
	waitServers(t, mergeTimeout, []string{"server_1", "server_2"}, map[string]*r.Session{"server_1": ss1, "server_2": ss2})
	waitServers(t, mergeTimeout, []string{"server_3"}, map[string]*r.Session{"server_3": ss3})

	p := c.StartProxyOn(h4, s1, s3)
	servers := map[string]*r.Session{"server_1": ss1, "server_2": ss2, "server_3": ss3}
	waitServers(t, mergeTimeout, []string{"server_1", "server_2", "server_3"}, servers)
	harness.Eventually(t, mergeTimeout, func() (bool, string) {
		issues, err := issuesOfType(t, ss2, "db_name_collision")
		if err != nil {
			return false, err.Error()
		}
		return len(issues) == 1, "waiting for the db_name_collision for test"
	})
	if res := runWrite(t, ss3, blogFix()); res.Replaced != 2 {
		t.Fatalf("the blog's query: %+v, want replaced 2", res)
	}
	if !p.Stop() {
		t.Errorf("the proxy did not exit within %v of SIGTERM", harness.StopTimeout)
	}
	meshed := func() (bool, string) {
		for via, s := range servers {
			names, err := serverNames(t, s)
			if err != nil || len(names) != 3 {
				return false, "via " + via + ": not 3 servers"
			}
		}
		return true, ""
	}
	harness.Eventually(t, mergeTimeout, meshed)
	harness.Consistently(t, 3*time.Second, meshed)
}
