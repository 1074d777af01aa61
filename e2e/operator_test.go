package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
)

// operatorAgent is an agent started with --http on a free port.
type operatorAgent struct {
	*harness.Process
	HTTP string // host:port of its operator endpoints
}

// freeHTTPAddr returns a 127.0.0.1 address nothing listens on now.
func freeHTTPAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startOperatorAgent is startAgent with the operator endpoints on a free
// port and JSON logs.
func startOperatorAgent(t testing.TB, c *harness.Cluster, node *harness.Node, peers []string, extra ...string) operatorAgent {
	t.Helper()
	addr := freeHTTPAddr(t)
	args := append([]string{"--http", addr, "--log-format", "json"}, extra...)
	return operatorAgent{Process: startAgent(t, c, node, peers, args...), HTTP: addr}
}

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// httpGet returns the status code and body, or an error when nothing answers.
func httpGet(addr, path string) (int, string, error) {
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// scrape parses an agent's /metrics with Prometheus's text parser.
func scrape(a operatorAgent) (map[string]*dto.MetricFamily, error) {
	code, body, err := httpGet(a.HTTP, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(body))
}

// metricSum sums, over agents, the series of a counter or gauge whose labels
// include the given name=value pairs.
func metricSum(agents []operatorAgent, name string, labels ...string) (float64, error) {
	sum := 0.0
	for _, a := range agents {
		mfs, err := scrape(a)
		if err != nil {
			return 0, fmt.Errorf("agent %s: %v", a.HTTP, err)
		}
		for _, m := range mfs[name].GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			ok := true
			for i := 0; i+1 < len(labels); i += 2 {
				ok = ok && have[labels[i]] == labels[i+1]
			}
			if ok {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum, nil
}

// agentStatus is the part of /status the scenarios look at.
type agentStatus struct {
	Source  string `json:"source"`
	Ready   bool   `json:"ready"`
	Node    struct{ ID, Name string }
	Servers []struct {
		ID          string   `json:"id"`
		Name        string   `json:"name"`
		ConnectedTo []string `json:"connected_to"`
	} `json:"servers"`
	Peers []struct {
		Key       string    `json:"key"`
		State     string    `json:"state"`
		FirstSeen time.Time `json:"first_seen"`
		LastSeen  time.Time `json:"last_seen"`
	} `json:"peers"`
	Issues []struct{ Type string } `json:"issues"`
	Recent []struct {
		Kind   string `json:"kind"`
		ID     string `json:"id"`
		Before string `json:"before"`
		After  string `json:"after"`
		Issue  string `json:"issue"`
		Reason string `json:"reason"`
	} `json:"recent"`
}

func statusOf(a operatorAgent) (agentStatus, error) {
	var s agentStatus
	code, body, err := httpGet(a.HTTP, "/status?recent=100")
	if err != nil {
		return s, err
	}
	if code != http.StatusOK {
		return s, fmt.Errorf("GET /status: %d %s", code, body)
	}
	return s, json.Unmarshal([]byte(body), &s)
}

// auditLines returns the agent's JSON log records with the given message.
func auditLines(t testing.TB, out, msg string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue // a proxy's or the server's own output
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			continue
		}
		if rec["msg"] == msg {
			recs = append(recs, rec)
		}
	}
	return recs
}

// TestOperatorViewOfBlogMerge is the blog post with agents, watched through
// /readyz, /metrics and /status: not ready while the clusters are split,
// one bridge, the empty duplicate `test` dropped once, ready everywhere
// afterwards, and every change in the audit trail.
func TestOperatorViewOfBlogMerge(t *testing.T) {
	c := harness.New(t)
	s1 := c.StartServer(harness.ServerOptions{Name: "server_1"})
	s2 := c.StartServer(harness.ServerOptions{Name: "server_2", Join: []*harness.Node{s1}})
	s3 := c.StartServer(harness.ServerOptions{Name: "server_3"})
	peers := clusterAddrs(s1, s2, s3)

	// Before the merge: server_3's agent sees the split but cannot start a
	// proxy (its --rethinkdb does not exist), so the split lasts as long as
	// the test needs and /readyz must say why it is not ready.
	a3 := startOperatorAgent(t, c, s3, peers, "--rethinkdb", filepath.Join(t.TempDir(), "no-rethinkdb"))
	harness.Eventually(t, agentMergeTimeout, func() (bool, string) {
		code, body, err := httpGet(a3.HTTP, "/readyz")
		if err != nil {
			return false, fmt.Sprintf("GET /readyz: %v", err)
		}
		return code == http.StatusServiceUnavailable && strings.Contains(body, "outside the cluster (foreign)"),
			fmt.Sprintf("/readyz before the merge: %d %q, want 503 naming a foreign peer", code, body)
	})
	if code, body, err := httpGet(a3.HTTP, "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz while split: %d %q %v, want 200: the agent itself works", code, body, err)
	}

	// The agents of server_1 and server_2 merge the clusters.
	agents := []operatorAgent{startOperatorAgent(t, c, s1, peers), startOperatorAgent(t, c, s2, peers), a3}
	ss := map[string]*r.Session{"server_1": s1.Session(t), "server_2": s2.Session(t), "server_3": s3.Session(t)}
	waitOneCluster(t, 3, ss)

	for _, a := range agents {
		harness.Eventually(t, agentMergeTimeout, func() (bool, string) {
			code, body, err := httpGet(a.HTTP, "/readyz")
			return err == nil && code == http.StatusOK, fmt.Sprintf("/readyz of %s after the merge: %d %q %v", a.Name, code, body, err)
		})
	}
	harness.Eventually(t, agentMergeTimeout, func() (bool, string) {
		n, err := metricSum(agents, "rethinkdb_agent_bridges_succeeded_total")
		return err == nil && n >= 1, fmt.Sprintf("bridges_succeeded_total summed = %v (%v), want >= 1", n, err)
	})
	n, err := metricSum(agents, "rethinkdb_agent_collisions_resolved_total", "type", "db_name_collision")
	if err != nil || n != 1 {
		t.Errorf("collisions_resolved_total{type=db_name_collision} summed = %v (%v), want 1: one empty `test` dropped", n, err)
	}
	waitNoProxy(t)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		n, err := metricSum(agents, "rethinkdb_agent_proxy_processes_running")
		return err == nil && n == 0, fmt.Sprintf("proxy_processes_running summed = %v (%v), want 0 after the merge", n, err)
	})
	if n, err := metricSum(agents, "rethinkdb_agent_foreign_peers"); err != nil || n != 0 {
		t.Errorf("foreign_peers summed = %v (%v), want 0", n, err)
	}
	if n, err := metricSum(agents, "rethinkdb_agent_peers_discovered", "provider", "static"); err != nil || n != 9 {
		t.Errorf("peers_discovered{provider=static} summed = %v (%v), want 9 (3 agents x 3 peers)", n, err)
	}

	// /status: every agent sees the whole mesh, and the drop is in one
	// agent's audit trail with before, after, uuid and reason.
	// The agents see the proxy leave through their next view of
	// server_status, which can come after the proxy process is gone: wait.
	drops := 0
	for _, a := range agents {
		var st agentStatus
		harness.Eventually(t, 30*time.Second, func() (bool, string) {
			var err error
			if st, err = statusOf(a); err != nil {
				return false, fmt.Sprintf("/status of %s: %v", a.Name, err)
			}
			if len(st.Servers) != 3 || len(st.Issues) != 0 || !st.Ready {
				return false, fmt.Sprintf("/status of %s: %d servers, issues %v, ready %v; want 3, none, true", a.Name, len(st.Servers), st.Issues, st.Ready)
			}
			for _, s := range st.Servers {
				if len(s.ConnectedTo) != 2 {
					return false, fmt.Sprintf("/status of %s: %s connected to %v, want the 2 others", a.Name, s.Name, s.ConnectedTo)
				}
			}
			return true, ""
		})
		for _, p := range st.Peers {
			if p.State != "local" || p.FirstSeen.IsZero() || p.LastSeen.Before(p.FirstSeen) {
				t.Errorf("/status of %s: peer %+v, want local with first/last seen", a.Name, p)
			}
		}
		for _, rec := range st.Recent {
			// drop_empty_db, or drop_empty_duplicate_db where the agent
			// checks that the name is still duplicated.
			if strings.HasPrefix(rec.Kind, "drop_empty") {
				drops++
				if rec.Before != "test" || rec.After != "(dropped)" || !uuidRE.MatchString(rec.ID) ||
					rec.Issue != "db_name_collision" || rec.Reason == "" {
					t.Errorf("audit record %+v, want before test, after (dropped), a uuid, the issue and a reason", rec)
				}
			}
		}
	}
	if drops != 1 {
		t.Errorf("drop_empty* records over all agents: %d, want 1", drops)
	}
	// The same change is a structured JSON log record.
	var logged []map[string]any
	for _, a := range agents {
		logged = append(logged, auditLines(t, a.Output(), "cluster change")...)
	}
	if len(logged) != 1 {
		t.Fatalf("\"cluster change\" JSON log records: %v, want 1", logged)
	}
	for _, k := range []string{"action", "id", "before", "after", "issue", "reason"} {
		if v, _ := logged[0][k].(string); v == "" {
			t.Errorf("audit log record %v lacks %s", logged[0], k)
		}
	}

	// `rethinkdb-agent status` against an agent, then straight to a node.
	out, code := harness.RunCommand(t, 30*time.Second, agentBinary(t), "status", "--http", agents[0].HTTP)
	for _, want := range []string{"ready", "SERVERS (3)", "server_1", "server_2", "server_3", "PEERS (3)", "ISSUES (0)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	out, code = harness.RunCommand(t, 30*time.Second, agentBinary(t), "status", "--http", freeHTTPAddr(t),
		"--node", s2.DriverAddr(), "--timeout", "10s")
	for _, want := range []string{"No agent answers", "SERVERS (3)", "server_1", "server_3", "ISSUES (0)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status without an agent (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
}

// TestOperatorHealthzWhenNodeDown: the agent of a stopped node stays healthy
// (its loop runs) but not ready, with the reason.
func TestOperatorHealthzWhenNodeDown(t *testing.T) {
	c := harness.New(t)
	s1 := c.StartServer(harness.ServerOptions{Name: "server_1"})
	a := startOperatorAgent(t, c, s1, clusterAddrs(s1))
	harness.Eventually(t, agentMergeTimeout, func() (bool, string) {
		code, body, err := httpGet(a.HTTP, "/readyz")
		return err == nil && code == http.StatusOK, fmt.Sprintf("/readyz of a lone node: %d %q %v, want 200", code, body, err)
	})
	if !s1.Stop() {
		t.Fatal("server_1 did not stop")
	}
	harness.Eventually(t, agentMergeTimeout, func() (bool, string) {
		code, body, err := httpGet(a.HTTP, "/readyz")
		return err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, "node unreachable"),
			fmt.Sprintf("/readyz with the node down: %d %q %v, want 503 node unreachable", code, body, err)
	})
	if code, body, err := httpGet(a.HTTP, "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz with the node down: %d %q %v, want 200", code, body, err)
	}
	if n, err := metricSum([]operatorAgent{a}, "rethinkdb_agent_node_up"); err != nil || n != 0 {
		t.Errorf("node_up = %v (%v), want 0 with the node down", n, err)
	}
}
