package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rethinkdb-agent/rethinkdb-agent/agent"
	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// fakeAgent is an agentView whose answers the test sets.
type fakeAgent struct {
	mu       sync.Mutex
	status   agent.Status
	health   error
	notReady []string
}

func (f *fakeAgent) Status() agent.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeAgent) Healthy() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}

func (f *fakeAgent) NotReady() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notReady
}

func (f *fakeAgent) set(fn func(f *fakeAgent)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// fakeDiscovery is a DiscoverySource / peerSnapshot.
type fakeDiscovery struct {
	snap []discovery.PeerState
	errs map[string]uint64
}

func (f fakeDiscovery) Snapshot() []discovery.PeerState { return f.snap }
func (f fakeDiscovery) ErrorCounts() map[string]uint64  { return f.errs }

var (
	t0      = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	server1 = rethink.Server{ID: "8f4c7c5e-1111-4000-8000-000000000001", Name: "server_1", ClusterPort: 29015,
		DriverPort: 28015, CanonicalAddresses: []rethink.Addr{{Host: "172.18.0.2", Port: 29015}},
		ConnectedTo: []string{"server_2"}}
	server2 = rethink.Server{ID: "0b1f2e3d-2222-4000-8000-000000000002", Name: "server_2", ClusterPort: 29015,
		ConnectedTo: []string{"server_1"}}
	blogView = rethink.View{Self: server1, Servers: []rethink.Server{server1, server2},
		Issues: []rethink.Issue{{ID: "i1", Type: rethink.IssueDBNameCollision, Critical: true, Name: "test",
			IDs: []string{"d1", "d2"}, Description: "There are multiple databases named `test`.\n\nmore"}}}
	staticPeer = discovery.Peer{Addrs: []string{"172.18.0.4"}, Port: 29015, Source: "static"}
)

func exampleStatus() agent.Status {
	v := blogView
	return agent.Status{
		Started: t0, LastReconcile: t0.Add(time.Minute), Discovered: true, View: &v,
		Peers: []agent.PeerStatus{{Key: staticPeer.Key(), Source: "static", Endpoints: []string{"172.18.0.4:29015"},
			State: agent.PeerForeign}},
		Proxy: "proxy-5d1e",
		Recent: []agent.Record{
			{Time: t0, Kind: agent.KindBridgeStarted, ID: "proxy-5d1e"},
			{Time: t0.Add(time.Second), Kind: "drop_empty_db", ID: "d2", Before: "test", After: "(dropped)",
				Issue: rethink.IssueDBNameCollision, Reason: "duplicate database \"test\" holds no table"},
		},
		Counts: map[string]int{"bridge_started": 1, "drop_empty_db": 1},
	}
}

func newTestServer(t *testing.T, a agentView, disc fakeDiscovery, reg *prometheus.Registry) *httptest.Server {
	t.Helper()
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	srv := httptest.NewServer(newHandler(a, disc, reg, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHealthz(t *testing.T) {
	f := &fakeAgent{}
	srv := newTestServer(t, f, fakeDiscovery{}, nil)
	if code, body := get(t, srv.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthy: %d %q, want 200 ok", code, body)
	}
	f.set(func(f *fakeAgent) { f.health = errors.New("the reconcile loop has not run for 2m") })
	if code, body := get(t, srv.URL+"/healthz"); code != 503 || !strings.Contains(body, "has not run") {
		t.Errorf("stuck loop: %d %q, want 503 with the reason", code, body)
	}
}

func TestReadyzTransitions(t *testing.T) {
	f := &fakeAgent{notReady: []string{"peer addr:172.18.0.4:29015 is outside the cluster (foreign)"}}
	srv := newTestServer(t, f, fakeDiscovery{}, nil)
	code, body := get(t, srv.URL+"/readyz")
	if code != 503 || !strings.Contains(body, "outside the cluster (foreign)") {
		t.Errorf("split: %d %q, want 503 naming the foreign peer", code, body)
	}
	code, body = get(t, srv.URL+"/readyz", "Accept", "application/json")
	var r readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 503 || r.Ready || len(r.Reasons) != 1 {
		t.Errorf("split, JSON: %d %q (%v), want 503 {ready:false, one reason}", code, body, err)
	}
	f.set(func(f *fakeAgent) { f.notReady = []string{"critical issue db_name_collision: ..."} })
	if code, _ := get(t, srv.URL+"/readyz"); code != 503 {
		t.Errorf("merged with a collision open: %d, want 503", code)
	}
	f.set(func(f *fakeAgent) { f.notReady = nil })
	if code, body := get(t, srv.URL+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("resolved: %d %q, want 200 ready", code, body)
	}
	code, body = get(t, srv.URL+"/readyz?format=json")
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 200 || !r.Ready {
		t.Errorf("resolved, JSON: %d %q, want 200 {ready:true}", code, body)
	}
}

func TestStatusDocument(t *testing.T) {
	f := &fakeAgent{status: exampleStatus(), notReady: []string{"critical issue db_name_collision: x"}}
	disc := fakeDiscovery{snap: []discovery.PeerState{{Peer: staticPeer, FirstSeen: t0, LastSeen: t0.Add(time.Minute)}}}
	srv := newTestServer(t, f, disc, nil)
	code, body := get(t, srv.URL+"/status")
	if code != 200 {
		t.Fatalf("GET /status: %d %s", code, body)
	}
	var doc statusDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, body)
	}
	if doc.Source != "agent" || doc.Ready == nil || *doc.Ready || len(doc.NotReady) != 1 {
		t.Errorf("source/ready: %q %v %v", doc.Source, doc.Ready, doc.NotReady)
	}
	if doc.Node == nil || doc.Node.Name != "server_1" || doc.Node.ID != server1.ID {
		t.Errorf("node = %+v, want server_1", doc.Node)
	}
	if len(doc.Servers) != 2 || doc.Servers[0].CanonicalAddresses[0] != "172.18.0.2:29015" ||
		doc.Servers[1].ConnectedTo[0] != "server_1" {
		t.Errorf("servers = %+v", doc.Servers)
	}
	if len(doc.Peers) != 1 || !doc.Peers[0].FirstSeen.Equal(t0) || !doc.Peers[0].LastSeen.Equal(t0.Add(time.Minute)) ||
		doc.Peers[0].State != agent.PeerForeign {
		t.Errorf("peers = %+v, want the foreign peer with first/last seen from discovery", doc.Peers)
	}
	if len(doc.Discovery) != 1 || doc.Discovery[0].Provider != "static" || !doc.Discovery[0].FirstSeen.Equal(t0) {
		t.Errorf("discovery = %+v", doc.Discovery)
	}
	if len(doc.Issues) != 1 || doc.Issues[0].Type != "db_name_collision" || !doc.Issues[0].Critical {
		t.Errorf("issues = %+v", doc.Issues)
	}
	if doc.Proxy != "proxy-5d1e" || len(doc.Recent) != 2 || doc.Recent[1].Issue != "db_name_collision" {
		t.Errorf("proxy %q, recent %+v", doc.Proxy, doc.Recent)
	}
	// ?recent=N keeps the last N.
	_, body = get(t, srv.URL+"/status?recent=1")
	doc = statusDoc{}
	if err := json.Unmarshal([]byte(body), &doc); err != nil || len(doc.Recent) != 1 || doc.Recent[0].Kind != "drop_empty_db" {
		t.Errorf("recent=1: %+v (%v), want the last record only", doc.Recent, err)
	}
	if code, body := get(t, srv.URL+"/status?recent=x"); code != 400 || !strings.Contains(body, "recent") {
		t.Errorf("recent=x: %d %q, want 400 naming the parameter", code, body)
	}
}

func TestStatusNodeUnreachable(t *testing.T) {
	f := &fakeAgent{status: agent.Status{Started: t0, NodeError: "connection refused"},
		notReady: []string{"node unreachable: connection refused"}}
	srv := newTestServer(t, f, fakeDiscovery{}, nil)
	_, body := get(t, srv.URL+"/status")
	var doc statusDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.NodeError != "connection refused" || doc.Node != nil || doc.Peers == nil || doc.Recent == nil {
		t.Errorf("doc = %+v, want the node error, no node, empty lists", doc)
	}
}

// TestMetricsParse serves a real agent's registry, as serveHTTP builds it,
// and parses it with Prometheus's own text parser.
func TestMetricsParse(t *testing.T) {
	a, err := agent.New(agent.Config{
		Dial:        func(context.Context) (agent.Cluster, error) { return nil, errors.New("no node") },
		StartBridge: func(context.Context, []string) (agent.Bridge, error) { return nil, errors.New("no bridge") },
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := a.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	disc := fakeDiscovery{
		snap: []discovery.PeerState{{Peer: staticPeer, FirstSeen: t0, LastSeen: t0}},
		errs: map[string]uint64{"static": 0, "dns": 3},
	}
	reg.MustRegister(agent.DiscoveryCollector(disc), agent.BuildInfo("v1.2.3"))
	srv := newTestServer(t, a, disc, reg)
	code, body := get(t, srv.URL+"/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the text parser rejects /metrics: %v\n%s", err, body)
	}
	for _, name := range []string{
		"rethinkdb_agent_bridges_started_total", "rethinkdb_agent_bridges_succeeded_total",
		"rethinkdb_agent_bridges_failed_total", "rethinkdb_agent_merge_duration_seconds",
		"rethinkdb_agent_collisions_resolved_total", "rethinkdb_agent_proxy_processes_running",
		"rethinkdb_agent_foreign_peers", "rethinkdb_agent_peers_discovered", "rethinkdb_agent_discovery_errors_total",
		"rethinkdb_agent_build_info", "rethinkdb_agent_node_up", "rethinkdb_agent_ready",
	} {
		if _, ok := mfs[name]; !ok && name != "rethinkdb_agent_collisions_resolved_total" {
			t.Errorf("no %s in /metrics", name)
		}
	}
	series := func(name string) map[string]float64 {
		out := map[string]float64{}
		for _, m := range mfs[name].GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out[strings.Join(labels, ",")] = v
		}
		return out
	}
	if got := series("rethinkdb_agent_peers_discovered"); got["provider=static"] != 1 || got["provider=dns"] != 0 || len(got) != 2 {
		t.Errorf("peers_discovered = %v, want static=1 dns=0", got)
	}
	if got := series("rethinkdb_agent_discovery_errors_total"); got["provider=dns"] != 3 || got["provider=static"] != 0 {
		t.Errorf("discovery_errors_total = %v, want dns=3 static=0", got)
	}
	bi := series("rethinkdb_agent_build_info")
	if len(bi) != 1 {
		t.Fatalf("build_info = %v", bi)
	}
	for labels, v := range bi {
		if v != 1 || !strings.Contains(labels, "version=v1.2.3") || !strings.Contains(labels, "goversion=go") {
			t.Errorf("build_info{%s} = %v, want 1 with version and goversion", labels, v)
		}
	}
	if got := series("rethinkdb_agent_node_up"); got[""] != 0 {
		t.Errorf("node_up = %v before any pass, want 0", got)
	}
}

// switchingCluster is a node whose view the test replaces; the embedded
// nil agent.Cluster makes any write panic, and none is expected.
type switchingCluster struct {
	agent.Cluster
	mu *sync.Mutex
	v  *rethink.View
}

func (c switchingCluster) View(context.Context) (rethink.View, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return *c.v, nil
}

func (c switchingCluster) Close() error { return nil }

// TestReadyzWithRunningAgent drives a real agent loop behind the handler:
// 503 while a foreign peer is discovered, 200 once the node's cluster holds
// it.
func TestReadyzWithRunningAgent(t *testing.T) {
	s1 := rethink.Server{ID: "aaaaaaaa-0000-4000-8000-000000000001", Name: "server_1", ClusterPort: 4001,
		CanonicalAddresses: []rethink.Addr{{Host: "127.0.0.1", Port: 4001}}}
	s2 := rethink.Server{ID: "bbbbbbbb-0000-4000-8000-000000000002", Name: "server_2", ClusterPort: 4002,
		CanonicalAddresses: []rethink.Addr{{Host: "127.0.0.1", Port: 4002}}}
	var mu sync.Mutex
	view := rethink.View{Self: s1, Servers: []rethink.Server{s1}}
	peers := make(chan []discovery.Peer, 1)
	peers <- []discovery.Peer{
		{Addrs: []string{"127.0.0.1"}, Port: 4001, Source: "static"},
		{Addrs: []string{"127.0.0.1"}, Port: 4002, Source: "static"},
	}
	a, err := agent.New(agent.Config{
		NodeHost: "127.0.0.1",
		Dial: func(context.Context) (agent.Cluster, error) {
			return switchingCluster{mu: &mu, v: &view}, nil
		},
		// The bridge cannot start: the split lasts until the test merges.
		StartBridge: func(context.Context, []string) (agent.Bridge, error) { return nil, errors.New("no proxy here") },
		Peers:       peers,
		Probe:       func(context.Context, netip.AddrPort) error { return nil },
		Interval:    10 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	srv := newTestServer(t, a, fakeDiscovery{}, nil)

	waitFor := func(what string, cond func(code int, body string) bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		poll := time.NewTicker(10 * time.Millisecond)
		defer poll.Stop()
		for {
			code, body := get(t, srv.URL+"/readyz")
			if cond(code, body) {
				return
			}
			select {
			case <-deadline:
				t.Fatalf("%s: last /readyz %d %q", what, code, body)
			case <-poll.C:
			}
		}
	}
	waitFor("split", func(code int, body string) bool {
		return code == 503 && strings.Contains(body, "addr:127.0.0.1:4002 is outside the cluster (foreign)")
	})
	mu.Lock()
	view.Servers = []rethink.Server{s1, s2}
	mu.Unlock()
	waitFor("merged", func(code int, body string) bool { return code == 200 && body == "ready\n" })
	if code, _ := get(t, srv.URL+"/healthz"); code != 200 {
		t.Errorf("/healthz of a running agent: %d", code)
	}
}

// TestLogFlags checks --log-format and --log-level, which the audit trail
// relies on: JSON records carry the change's fields, and a level above info
// hides info records.
func TestLogFlags(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		wantJSON  bool
		wantInfo  bool
		wantDebug bool
	}{
		{nil, false, true, false},
		{[]string{"--log-format", "json"}, true, true, false},
		{[]string{"--log-level", "debug"}, false, true, true},
		{[]string{"--log-level", "warn", "--log-format", "json"}, true, false, false},
	} {
		c, err := parseRun(tc.args, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		var buf strings.Builder
		log := newLogger(c, &buf)
		log.Debug("debug record")
		log.Info("cluster change", "action", "drop_empty_duplicate_db", "id", "d2", "before", "test", "after", "(dropped)")
		out := buf.String()
		if got := strings.Contains(out, "cluster change"); got != tc.wantInfo {
			t.Errorf("%v: info logged = %v, want %v:\n%s", tc.args, got, tc.wantInfo, out)
		}
		if got := strings.Contains(out, "debug record"); got != tc.wantDebug {
			t.Errorf("%v: debug logged = %v, want %v", tc.args, got, tc.wantDebug)
		}
		if tc.wantJSON && tc.wantInfo {
			var rec map[string]any
			if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &rec); err != nil || rec["before"] != "test" || rec["id"] != "d2" {
				t.Errorf("%v: not one JSON record with the change's fields: %v\n%s", tc.args, err, out)
			}
		}
	}
	for _, bad := range [][]string{{"--log-format", "xml"}, {"--log-level", "loud"}} {
		if _, err := parseRun(bad, io.Discard); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: err %v, want one naming %s", bad, err, bad[0])
		}
	}
}
