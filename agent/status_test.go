package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// clock is a settable Now for health tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestAgent(t *testing.T, c *clock) *Agent {
	t.Helper()
	a, err := New(Config{
		Dial:        func(context.Context) (Cluster, error) { return nil, errors.New("no node in this test") },
		StartBridge: func(context.Context, []string) (Bridge, error) { return nil, errors.New("no bridge") },
		Interval:    time.Second,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:         c.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestHealthy(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	a := newTestAgent(t, c)
	stale := a.ops.staleAfter
	if err := a.Healthy(); err != nil {
		t.Errorf("just created: %v, want healthy (starting)", err)
	}
	c.add(stale + time.Second)
	if err := a.Healthy(); err == nil || !strings.Contains(err.Error(), "no reconcile pass") {
		t.Errorf("never reconciled after %s: %v, want an error", stale, err)
	}
	a.setNodeStatus(rethink.View{}, errors.New("connection refused"))
	if err := a.Healthy(); err != nil {
		t.Errorf("a pass that failed to read the node still proves the loop alive: %v", err)
	}
	c.add(stale + time.Second)
	if err := a.Healthy(); err == nil || !strings.Contains(err.Error(), "has not run") {
		t.Errorf("stale loop: %v, want an error", err)
	}
}

func TestNotReadyTransitions(t *testing.T) {
	self := rethink.Server{ID: "s1", Name: "server_1"}
	collision := rethink.Issue{Type: rethink.IssueDBNameCollision, Critical: true, Name: "test",
		Description: "There are multiple databases named `test`.\n\nmore"}
	tests := []struct {
		name  string
		setup func(a *Agent)
		want  []string // substrings, one per reason, in order; none means ready
	}{
		{"not read yet", func(a *Agent) {}, []string{"node: not read yet", "discovery: no peer set yet"}},
		{"node unreachable", func(a *Agent) {
			a.setDiscovered()
			a.setNodeStatus(rethink.View{}, errors.New("connection refused"))
		}, []string{"node unreachable: connection refused"}},
		{"foreign and returning peers", func(a *Agent) {
			a.setDiscovered()
			a.setNodeStatus(rethink.View{Self: self, Servers: []rethink.Server{self}}, nil)
			a.setPeerStatus([]peerView{
				{State: PeerLocal},
				{State: PeerForeign},
				{State: PeerReturning},
				{State: PeerUnreachable},
				{State: PeerConflict},
			})
		}, []string{"outside the cluster (foreign)", "outside the cluster (returning)"}},
		{"critical issue", func(a *Agent) {
			a.setDiscovered()
			a.setNodeStatus(rethink.View{Self: self, Servers: []rethink.Server{self},
				Issues: []rethink.Issue{collision, {Type: "log_write_error", Critical: false}}}, nil)
		}, []string{"critical issue db_name_collision: There are multiple databases named `test`."}},
		{"ready", func(a *Agent) {
			a.setDiscovered()
			a.setNodeStatus(rethink.View{Self: self, Servers: []rethink.Server{self}}, nil)
			a.setPeerStatus([]peerView{{State: PeerLocal}, {State: PeerUnreachable}})
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAgent(t, &clock{t: time.Unix(1000, 0)})
			tt.setup(a)
			got := a.NotReady()
			if len(got) != len(tt.want) {
				t.Fatalf("NotReady() = %q, want %d reasons like %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("reason %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// gather registers the agent's metrics in a fresh registry and returns the
// families by name.
func gather(t *testing.T, a *Agent) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := a.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value is the value of the series of family name whose labels include
// labels (name=value pairs).
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no series of %s with labels %v", name, labels)
	return 0
}

func TestRecordsFeedMetrics(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	a := newTestAgent(t, c)
	t0 := c.now()
	a.record(Record{Time: t0, Kind: KindBridgeFailed, Reason: "start proxy: no binary"})
	a.record(Record{Time: t0, Kind: KindBridgeStarted, ID: "proxy-1"})
	a.setProxy("proxy-1")
	mfs := gather(t, a)
	if v := value(t, mfs, "rethinkdb_agent_proxy_processes_running"); v != 1 {
		t.Errorf("proxy_processes_running = %v while a proxy runs, want 1", v)
	}
	a.record(Record{Time: t0.Add(1500 * time.Millisecond), Kind: KindBridgeSucceeded, ID: "proxy-1"})
	a.setProxy("")
	a.record(Record{Time: t0, Kind: string(ActionDropEmptyDB), ID: "db1", Before: "test", After: "(dropped)",
		Issue: rethink.IssueDBNameCollision})
	a.record(Record{Time: t0, Kind: "would_" + string(ActionRenameDB), ID: "db2", Issue: rethink.IssueDBNameCollision,
		DryRun: true})

	mfs = gather(t, a)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"rethinkdb_agent_bridges_started_total", nil, 1},
		{"rethinkdb_agent_bridges_succeeded_total", nil, 1},
		{"rethinkdb_agent_bridges_failed_total", nil, 1},
		{"rethinkdb_agent_merge_duration_seconds", nil, 1},
		{"rethinkdb_agent_proxy_processes_running", nil, 0},
		{"rethinkdb_agent_collisions_resolved_total", []string{"type", "db_name_collision", "action", "drop_empty_db"}, 1},
	} {
		if got := value(t, mfs, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if sum := mfs["rethinkdb_agent_merge_duration_seconds"].GetMetric()[0].GetHistogram().GetSampleSum(); sum != 1.5 {
		t.Errorf("merge duration sum = %v, want 1.5 (from bridge_started to bridge_succeeded)", sum)
	}
	// The dry run is in the audit trail but resolved nothing.
	if n := len(mfs["rethinkdb_agent_collisions_resolved_total"].GetMetric()); n != 1 {
		t.Errorf("collisions_resolved_total has %d series, want 1 (dry runs do not count)", n)
	}
	s := a.Status()
	kinds := []string{}
	for _, r := range s.Recent {
		kinds = append(kinds, r.Kind)
	}
	want := []string{"bridge_failed", "bridge_started", "bridge_succeeded", "drop_empty_db", "would_rename_db"}
	if !slices.Equal(kinds, want) {
		t.Errorf("audit trail kinds = %v, want %v", kinds, want)
	}
	if s.Recent[2].Took != 1500*time.Millisecond {
		t.Errorf("bridge_succeeded took = %s, want 1.5s", s.Recent[2].Took)
	}
}

func TestRingBufferKeepsLastRecords(t *testing.T) {
	a := newTestAgent(t, &clock{t: time.Unix(1000, 0)})
	for i := range maxRecords + 10 {
		a.record(Record{Kind: "rename_db", ID: string(rune('a' + i%26))})
	}
	s := a.Status()
	if len(s.Recent) != maxRecords {
		t.Errorf("kept %d records, want %d", len(s.Recent), maxRecords)
	}
	if s.Counts["rename_db"] != maxRecords+10 {
		t.Errorf("count = %d, want every record counted", s.Counts["rename_db"])
	}
}

func TestStatusGauges(t *testing.T) {
	a := newTestAgent(t, &clock{t: time.Unix(1000, 0)})
	self := rethink.Server{ID: "s1", Name: "server_1"}
	a.setDiscovered()
	a.setNodeStatus(rethink.View{Self: self, Servers: []rethink.Server{self, {ID: "s2", Name: "server_2"}},
		Issues: []rethink.Issue{
			{Type: rethink.IssueDBNameCollision, Critical: true},
			{Type: rethink.IssueDBNameCollision, Critical: true},
			{Type: rethink.IssueTableAvailability, Critical: false},
		}}, nil)
	a.setPeerStatus([]peerView{{State: PeerLocal}, {State: PeerForeign}, {State: PeerForeign}})
	mfs := gather(t, a)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"rethinkdb_agent_open_issues", []string{"type", "db_name_collision", "critical", "true"}, 2},
		{"rethinkdb_agent_open_issues", []string{"type", "table_availability", "critical", "false"}, 1},
		{"rethinkdb_agent_foreign_peers", nil, 2},
		{"rethinkdb_agent_peers", []string{"state", "local"}, 1},
		{"rethinkdb_agent_node_up", nil, 1},
		{"rethinkdb_agent_cluster_servers", nil, 2},
		{"rethinkdb_agent_ready", nil, 0},
		{"rethinkdb_agent_last_reconcile_timestamp_seconds", nil, 1000},
	} {
		if got := value(t, mfs, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}
