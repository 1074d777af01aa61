package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// agentMergeTimeout bounds how long agents may take to assemble a cluster.
// A non-chooser acts after --fallback-after, so this is well above it.
const agentMergeTimeout = 90 * time.Second

var (
	agentOnce sync.Once
	agentBin  string
	agentErr  error
)

// agentBinary is RETHINKDB_AGENT_BIN (the Makefile sets it) or the agent
// built once per test binary.
func agentBinary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("RETHINKDB_AGENT_BIN"); b != "" {
		return b
	}
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rethinkdb-agent-build")
		if err != nil {
			agentErr = err
			return
		}
		agentBin = filepath.Join(dir, "rethinkdb-agent")
		out, err := exec.Command("go", "build", "-o", agentBin, "github.com/rethinkdb-agent/rethinkdb-agent/cmd/rethinkdb-agent").CombinedOutput()
		if err != nil {
			agentErr = fmt.Errorf("go build ./cmd/rethinkdb-agent: %v\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentBin
}

// startAgent runs `rethinkdb-agent run` beside node with static peers.
func startAgent(t testing.TB, c *harness.Cluster, node *harness.Node, peers []string, extra ...string) *harness.Process {
	t.Helper()
	args := []string{"run", "--node", node.DriverAddr(), "--rethinkdb", harness.Binary(t),
		"--interval", "1s", "--fallback-after", "5s", "--log-level", "debug"}
	for _, p := range peers {
		args = append(args, "--peer", p)
	}
	args = append(args, extra...)
	name := "agent"
	if node.ServerName != "" {
		name = "agent-" + node.ServerName
	}
	return c.StartProcess(name, agentBinary(t), args...)
}

func clusterAddrs(nodes ...*harness.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ClusterAddr())
	}
	return out
}

// proxiesStarted counts the bridges the agents started, from their logs.
func proxiesStarted(agents ...*harness.Process) int {
	n := 0
	for _, a := range agents {
		n += strings.Count(a.Output(), "bridging foreign peers")
	}
	return n
}

// runningProxies lists the `rethinkdb proxy` processes of this machine that
// run the scenario's binary and join one of the given cluster addresses: the
// ports are the test's own, so proxies of tests running in other packages at
// the same time (go test ./... with RETHINKDB_BIN) do not count. A real
// rethinkdb's extproc spawner has the same argv and counts until it follows
// its proxy out.
func runningProxies(bin string, joins ...string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		joined := slices.ContainsFunc(argv, func(a string) bool { return slices.Contains(joins, a) })
		if len(argv) > 1 && argv[0] == bin && argv[1] == "proxy" && joined {
			// Zombies have no cmdline; a live one is what we look for.
			out = append(out, e.Name()+": "+strings.Join(argv, " "))
		}
	}
	return out
}

// waitOneCluster waits until every session sees n servers, each connected to
// all others, and no current issue.
func waitOneCluster(t testing.TB, n int, sessions map[string]*r.Session) {
	t.Helper()
	harness.Eventually(t, agentMergeTimeout, func() (bool, string) {
		for via, s := range sessions {
			rows, err := systemTable(t, s, "server_status")
			if err != nil {
				return false, fmt.Sprintf("server_status via %s: %v", via, err)
			}
			if len(rows) != n {
				return false, fmt.Sprintf("server_status via %s lists %d servers, want %d", via, len(rows), n)
			}
			issues, err := systemTable(t, s, "current_issues")
			if err != nil {
				return false, fmt.Sprintf("current_issues via %s: %v", via, err)
			}
			if len(issues) != 0 {
				return false, fmt.Sprintf("current_issues via %s: %v", via, issues)
			}
		}
		return true, ""
	})
}

func dbNames(t testing.TB, s *r.Session) []string {
	t.Helper()
	rows := mustSystemTable(t, s, "db_config")
	var names []string
	for _, row := range rows {
		names = append(names, fmt.Sprint(row["name"]))
	}
	sort.Strings(names)
	return names
}

// allDocs reads every document of every user table, keyed by "db.table".
func allDocs(t testing.TB, s *r.Session) (map[string][]string, error) {
	t.Helper()
	rows, err := systemTable(t, s, "table_config")
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, row := range rows {
		db, table := fmt.Sprint(row["db"]), fmt.Sprint(row["name"])
		docs, err := tableDocs(t, s, db, table)
		if err != nil {
			return nil, fmt.Errorf("read %s.%s: %w", db, table, err)
		}
		out[db+"."+table] = docs
	}
	return out, nil
}

// mustAllDocs is allDocs for a cluster known to be settled.
func mustAllDocs(t testing.TB, s *r.Session) map[string][]string {
	t.Helper()
	docs, err := allDocs(t, s)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// sameDocs is a condition for Eventually: s serves exactly the documents
// want. A read error only means "not yet": a real cluster that has just
// merged, renamed or reconnected can refuse a read for a moment (renames
// travel between servers, a table's primary becomes ready after its
// server reconnects), and the condition must retry rather than end the test.
func sameDocs(t testing.TB, via string, s *r.Session, want []string, when string) func() (bool, string) {
	return func() (bool, string) {
		docs, err := allDocs(t, s)
		if err != nil {
			return false, fmt.Sprintf("via %s %s: %v", via, when, err)
		}
		after := flatten(docs)
		return slices.Equal(after, want), fmt.Sprintf("via %s: %d documents %s, %d before", via, len(after), when, len(want))
	}
}

// flatten is every document of a allDocs result, sorted: what must survive
// a merge whatever the tables are renamed to.
func flatten(m map[string][]string) []string {
	var out []string
	for _, docs := range m {
		out = append(out, docs...)
	}
	sort.Strings(out)
	return out
}

// waitNoProxy waits until no proxy joined to one of nodes is left.
func waitNoProxy(t testing.TB, nodes ...*harness.Node) {
	t.Helper()
	bin := harness.Binary(t)
	joins := clusterAddrs(nodes...)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		left := runningProxies(bin, joins...)
		return len(left) == 0, fmt.Sprintf("proxy processes still running: %v", left)
	})
}

// TestAgentsAssembleBlogCluster is the blog post with agents: server_1 and
// server_2 joined, server_3 alone, an agent beside each.
func TestAgentsAssembleBlogCluster(t *testing.T) {
	c := harness.New(t)
	s1 := c.StartServer(harness.ServerOptions{Name: "server_1"})
	s2 := c.StartServer(harness.ServerOptions{Name: "server_2", Join: []*harness.Node{s1}})
	s3 := c.StartServer(harness.ServerOptions{Name: "server_3"})
	peers := clusterAddrs(s1, s2, s3)
	var agents []*harness.Process
	for _, n := range []*harness.Node{s1, s2, s3} {
		agents = append(agents, startAgent(t, c, n, peers))
	}
	ss := map[string]*r.Session{"server_1": s1.Session(t), "server_2": s2.Session(t), "server_3": s3.Session(t)}
	waitOneCluster(t, 3, ss)
	if got := dbNames(t, ss["server_3"]); !slices.Equal(got, []string{"test"}) {
		t.Errorf("databases after the merge: %v, want test once", got)
	}
	waitNoProxy(t, s1, s2, s3)
	t.Logf("proxies started by the agents: %d", proxiesStarted(agents...))
	if n := proxiesStarted(agents...); n < 1 {
		t.Errorf("no agent logged a bridge")
	}
}

// TestAgentsKeepDataOnBothSides: an `app` database with tables and documents
// on both sides; both survive under distinct names with every document.
func TestAgentsKeepDataOnBothSides(t *testing.T) {
	c := harness.New(t)
	s1 := c.StartServer(harness.ServerOptions{Name: "server_1"})
	s2 := c.StartServer(harness.ServerOptions{Name: "server_2", Join: []*harness.Node{s1}})
	s3 := c.StartServer(harness.ServerOptions{Name: "server_3"})
	ss1, ss3 := s1.Session(t), s3.Session(t)
	waitServers(t, mergeTimeout, []string{"server_1", "server_2"}, map[string]*r.Session{"server_1": ss1})
	createFixtures(t, ss1, sideFixtures("t1"))
	createFixtures(t, ss3, sideFixtures("t3"))
	before := append(flatten(mustAllDocs(t, ss1)), flatten(mustAllDocs(t, ss3))...)
	sort.Strings(before)

	peers := clusterAddrs(s1, s2, s3)
	for _, n := range []*harness.Node{s1, s2, s3} {
		startAgent(t, c, n, peers)
	}
	ss := map[string]*r.Session{"server_1": ss1, "server_2": s2.Session(t), "server_3": ss3}
	waitOneCluster(t, 3, ss)

	names := dbNames(t, ss1)
	apps := 0
	for _, n := range names {
		if n == "app" || strings.HasPrefix(n, "app_") {
			apps++
		}
	}
	if apps != 2 || !slices.Contains(names, "app") {
		t.Errorf("databases after the merge: %v, want app and one renamed app_<uuid block>", names)
	}
	for via, s := range ss {
		harness.Eventually(t, mergeTimeout, sameDocs(t, via, s, before, "after the merge"))
	}
	waitNoProxy(t, s1, s2, s3)
}

// TestFiveFreshNodesMakeOneCluster starts five lone nodes and their agents at
// once, each agent knowing every peer.
func TestFiveFreshNodesMakeOneCluster(t *testing.T) {
	c := harness.New(t)
	var nodes []*harness.Node
	for i := range 5 {
		nodes = append(nodes, c.StartServer(harness.ServerOptions{Name: fmt.Sprintf("node_%d", i+1)}))
	}
	peers := clusterAddrs(nodes...)
	var agents []*harness.Process
	for _, n := range nodes {
		agents = append(agents, startAgent(t, c, n, peers))
	}
	ss := map[string]*r.Session{}
	for _, n := range nodes {
		ss[n.ServerName] = n.Session(t)
	}
	waitOneCluster(t, 5, ss)
	if got := dbNames(t, ss["node_1"]); !slices.Equal(got, []string{"test"}) {
		t.Errorf("databases after the merge: %v, want test once", got)
	}
	waitNoProxy(t, nodes...)
	n := proxiesStarted(agents...)
	t.Logf("five fresh nodes: the agents started %d proxies", n)
	if n < 1 {
		t.Errorf("no agent logged a bridge")
	}
}

// TestServerNameCollisionResolved: two lone nodes with the same
// --server-name end up with distinct names.
func TestServerNameCollisionResolved(t *testing.T) {
	c := harness.New(t)
	a := c.StartServer(harness.ServerOptions{Name: "dup"})
	b := c.StartServer(harness.ServerOptions{Name: "dup"})
	peers := clusterAddrs(a, b)
	startAgent(t, c, a, peers)
	startAgent(t, c, b, peers)
	ss := map[string]*r.Session{"a": a.Session(t), "b": b.Session(t)}
	waitOneCluster(t, 2, ss)
	names, err := serverNames(t, ss["a"])
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names[0] == names[1] || !slices.Contains(names, "dup") {
		t.Errorf("server names after the merge: %v, want dup and dup_<uuid block>", names)
	}
}

// TestFullRestartWithoutJoin: after a merge, every node restarts without
// --join, so no server remembers another; the agents bridge them again and
// no document is lost.
func TestFullRestartWithoutJoin(t *testing.T) {
	c := harness.New(t)
	s1 := c.StartServer(harness.ServerOptions{Name: "server_1"})
	s2 := c.StartServer(harness.ServerOptions{Name: "server_2", Join: []*harness.Node{s1}})
	s3 := c.StartServer(harness.ServerOptions{Name: "server_3"})
	createFixtures(t, s3.Session(t), sideFixtures("t3"))
	peers := clusterAddrs(s1, s2, s3)
	for _, n := range []*harness.Node{s1, s2, s3} {
		startAgent(t, c, n, peers, "--rejoin-grace", "5s")
	}
	nodes := []*harness.Node{s1, s2, s3}
	sessions := func() map[string]*r.Session {
		ss := map[string]*r.Session{}
		for _, n := range nodes {
			ss[n.ServerName] = n.Session(t)
		}
		return ss
	}
	waitOneCluster(t, 3, sessions())
	before := flatten(mustAllDocs(t, s1.Session(t)))

	for _, n := range nodes {
		if !n.Stop() {
			t.Fatalf("%s did not stop", n.Name)
		}
	}
	for _, n := range nodes {
		n.Restart(harness.ServerOptions{Name: n.ServerName}) // same dir and ports, no --join
	}
	ss := sessions()
	waitOneCluster(t, 3, ss)
	for via, s := range ss {
		harness.Eventually(t, mergeTimeout, sameDocs(t, via, s, before, "after the restart"))
	}
	waitNoProxy(t, nodes...)
}

// TestReportPolicyChangesNothing: with --collisions=report the agents still
// bridge, but leave the collisions alone and say what they would do.
func TestReportPolicyChangesNothing(t *testing.T) {
	c := harness.New(t)
	s1 := c.StartServer(harness.ServerOptions{Name: "server_1"})
	s3 := c.StartServer(harness.ServerOptions{Name: "server_3"})
	ss1, ss3 := s1.Session(t), s3.Session(t)
	createFixtures(t, ss1, sideFixtures("t1"))
	createFixtures(t, ss3, sideFixtures("t3"))
	peers := clusterAddrs(s1, s3)
	a1 := startAgent(t, c, s1, peers, "--collisions", "report")
	a3 := startAgent(t, c, s3, peers, "--collisions", "report")
	waitServers(t, agentMergeTimeout, []string{"server_1", "server_3"}, map[string]*r.Session{"server_1": ss1, "server_3": ss3})
	harness.Eventually(t, agentMergeTimeout, func() (bool, string) {
		out := a1.Output() + a3.Output()
		return strings.Contains(out, "collision left alone"), "no agent reported the collisions it leaves alone"
	})
	waitNoProxy(t, s1, s3)
	harness.Consistently(t, 5*time.Second, func() (bool, string) {
		got := dbNames(t, ss1)
		return slices.Equal(got, []string{"app", "app", "test", "test"}), fmt.Sprintf("databases: %v, want both sides' untouched", got)
	})
	issues, err := issuesOfType(t, ss1, "db_name_collision")
	if err != nil || len(issues) != 2 {
		t.Errorf("db_name_collision issues: %v (err %v), want 2 left open", issues, err)
	}
}

// TestKilledAgentLeavesNoProxy kills the agent with SIGKILL while its proxy
// runs: the proxy must die with it.
func TestKilledAgentLeavesNoProxy(t *testing.T) {
	c := harness.New(t)
	s1 := c.StartServer(harness.ServerOptions{Name: "server_1"})
	// A peer that accepts TCP connections but is no rethinkdb: the bridge
	// to it never completes, so the proxy stays up until the merge timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 512)
				for {
					if _, err := conn.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	a := startAgent(t, c, s1, []string{s1.ClusterAddr(), ln.Addr().String()}, "--merge-timeout", "5m",
		"--fallback-after", "1s")
	a.WaitLog(t, "bridging foreign peers", agentMergeTimeout)
	bin := harness.Binary(t)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		return len(runningProxies(bin, s1.ClusterAddr())) > 0, "the agent's proxy is not running yet"
	})
	if err := syscall.Kill(a.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitNoProxy(t, s1)
}
