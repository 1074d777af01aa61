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

// TestBindLoopbackListensOnEveryLoopback replays logs/bind-loopback.log on a
// host of its own: an unconfigured --bind address is refused; a server bound
// to one loopback address listens on all of them, so a second server on
// another loopback address cannot use the same port.
func TestBindLoopbackListensOnEveryLoopback(t *testing.T) {
	t.Parallel()
	network := harness.NewNetwork(t)
	c := harness.New(t)
	h := network.AddHost("vm")

	refused := c.StartServer(harness.ServerOptions{Name: "la", Host: h, Bind: []string{"127.0.0.11"}, NoWait: true})
	refused.WaitLog(t, "Could not find bind ip address '127.0.0.11'", harness.LogTimeout)
	waitExit(t, refused.Process)

	h.AddAddress(t, "127.0.0.11/8", "lo")
	h.AddAddress(t, "127.0.0.12/8", "lo")
	la := c.StartServer(harness.ServerOptions{Name: "la", Host: h, Bind: []string{"127.0.0.11"}})
	la.WaitLog(t, "Listening on cluster addresses: 127.0.0.1, 127.0.0.11, 127.0.0.12", harness.LogTimeout)
	lb := c.StartServer(harness.ServerOptions{Name: "lb", Host: h, Bind: []string{"127.0.0.12"},
		JoinAddrs: []string{"127.0.0.11:29015"}, NoWait: true})
	lb.WaitLog(t, "TCP socket creation failed for port 29015: Address already in use.", harness.LogTimeout)
	waitExit(t, lb.Process)
}

func waitExit(t *testing.T, p *harness.Process) {
	t.Helper()
	select {
	case <-p.Exited():
		// The recordings do not show the exit code of these failures.
	case <-time.After(harness.LogTimeout):
		t.Fatalf("%s still runs after a failed start", p.Name)
	}
}
