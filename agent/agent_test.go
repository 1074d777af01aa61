package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// world is a fake set of rethinkdb servers: each belongs to a cluster, owns
// databases, and a bridge merges the clusters of the endpoints it joins.
type world struct {
	mu      sync.Mutex
	servers []*fakeServer
	dbs     map[string]*fakeDB // id -> db
	bridges int
	writes  []string
}

type fakeServer struct {
	id, name string
	ep       netip.AddrPort
	cluster  int
	started  time.Time
}

type fakeDB struct {
	id, name string
	owner    *fakeServer // a db belongs to the cluster of its owner
	tables   int
}

func newWorld(n int) *world {
	w := &world{dbs: map[string]*fakeDB{}}
	for i := range n {
		s := &fakeServer{
			id:      fmt.Sprintf("%08x-0000-4000-8000-%012x", 0xa0+i, i),
			name:    fmt.Sprintf("server_%d", i+1),
			ep:      netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", 4000+i)),
			cluster: i,
			started: time.Unix(int64(1000+i), 0),
		}
		w.servers = append(w.servers, s)
		id := fmt.Sprintf("%08x-1111-4000-8000-%012x", 0xd0+i, i)
		w.dbs[id] = &fakeDB{id: id, name: "test", owner: s}
	}
	return w
}

func (w *world) peers() []discovery.Peer {
	var ps []discovery.Peer
	for _, s := range w.servers {
		ps = append(ps, discovery.Peer{Addrs: []string{s.ep.Addr().String()}, Port: int(s.ep.Port()), Source: "static"})
	}
	return ps
}

func (w *world) clusters() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[int]bool{}
	for _, s := range w.servers {
		seen[s.cluster] = true
	}
	return len(seen)
}

func (w *world) dbNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var names []string
	for _, d := range w.dbs {
		names = append(names, d.name)
	}
	sort.Strings(names)
	return names
}

func (w *world) view(self *fakeServer) rethink.View {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := rethink.View{}
	var members []*fakeServer
	for _, s := range w.servers {
		if s.cluster == self.cluster {
			members = append(members, s)
		}
	}
	for _, s := range members {
		rs := rethink.Server{ID: s.id, Name: s.name, ClusterPort: int(s.ep.Port()), TimeStarted: s.started,
			CanonicalAddresses: []rethink.Addr{{Host: s.ep.Addr().String(), Port: int(s.ep.Port())}}}
		for _, o := range members {
			if o != s {
				rs.ConnectedTo = append(rs.ConnectedTo, o.name+"_"+o.id)
			}
		}
		v.Servers = append(v.Servers, rs)
		if s == self {
			v.Self = rs
		}
	}
	byName := map[string][]string{}
	for _, d := range w.dbs {
		if d.owner.cluster == self.cluster {
			v.DBs = append(v.DBs, rethink.DB{ID: d.id, Name: d.name})
			byName[d.name] = append(byName[d.name], d.id)
			for i := range d.tables {
				v.Tables = append(v.Tables, rethink.Table{ID: fmt.Sprintf("%s-t%d", d.id, i), Name: fmt.Sprintf("t%d", i), DBID: d.id})
			}
		}
	}
	for name, ids := range byName {
		if len(ids) > 1 {
			sort.Strings(ids)
			v.Issues = append(v.Issues, rethink.Issue{Type: rethink.IssueDBNameCollision, Name: name, IDs: ids})
		}
	}
	return v
}

// bridge merges the clusters of every joined endpoint.
func (w *world) bridge(joins []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bridges++
	target := -1
	var merge []int
	for _, j := range joins {
		for _, s := range w.servers {
			if s.ep.String() == j {
				if target < 0 {
					target = s.cluster
				}
				merge = append(merge, s.cluster)
			}
		}
	}
	for _, s := range w.servers {
		if slices.Contains(merge, s.cluster) {
			s.cluster = target
		}
	}
}

// fakeCluster is one agent's connection to its server in the world.
type fakeCluster struct {
	w    *world
	self *fakeServer
}

func (c *fakeCluster) View(context.Context) (rethink.View, error) { return c.w.view(c.self), nil }
func (c *fakeCluster) Close() error                               { return nil }

func (c *fakeCluster) RenameDB(_ context.Context, id, from, to string) (bool, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	d, ok := c.w.dbs[id]
	if !ok || d.name != from {
		return false, nil
	}
	d.name = to
	c.w.writes = append(c.w.writes, "rename "+id)
	return true, nil
}

func (c *fakeCluster) DropDBIfEmpty(_ context.Context, id, name string) (bool, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	d, ok := c.w.dbs[id]
	if !ok || d.name != name || d.tables > 0 {
		return false, nil
	}
	delete(c.w.dbs, id)
	c.w.writes = append(c.w.writes, "drop "+id)
	return true, nil
}

func (c *fakeCluster) DropDuplicateDBIfEmpty(ctx context.Context, id, name string) (bool, error) {
	c.w.mu.Lock()
	dup := false
	for _, d := range c.w.dbs {
		dup = dup || (d.id != id && d.name == name)
	}
	c.w.mu.Unlock()
	if !dup {
		return false, nil
	}
	return c.DropDBIfEmpty(ctx, id, name)
}

func (c *fakeCluster) MoveTable(context.Context, string, string, string) (bool, error) {
	return false, fmt.Errorf("not in this fake")
}
func (c *fakeCluster) RenameTable(context.Context, string, string, string) (bool, error) {
	return false, fmt.Errorf("not in this fake")
}
func (c *fakeCluster) RenameServer(context.Context, string, string, string) (bool, error) {
	return false, fmt.Errorf("not in this fake")
}

type fakeBridge struct{ done chan struct{} }

func (b *fakeBridge) ID() string                 { return "proxy-fake" }
func (b *fakeBridge) Done() <-chan struct{}      { return b.done }
func (b *fakeBridge) Stop(context.Context) error { return nil }

// startAgent runs an agent for server i of the world until ctx ends.
func startAgent(t *testing.T, ctx context.Context, w *world, i int, policy Policy, startedAt *[]time.Duration) {
	t.Helper()
	peers := make(chan []discovery.Peer, 1)
	peers <- w.peers()
	t0 := time.Now()
	a, err := New(Config{
		Policy:   policy,
		NodeHost: "127.0.0.1",
		Dial: func(context.Context) (Cluster, error) {
			return &fakeCluster{w: w, self: w.servers[i]}, nil
		},
		StartBridge: func(_ context.Context, joins []string) (Bridge, error) {
			if startedAt != nil {
				*startedAt = append(*startedAt, time.Since(t0))
			}
			w.bridge(joins)
			return &fakeBridge{done: make(chan struct{})}, nil
		},
		Peers:  peers,
		Probe:  func(context.Context, netip.AddrPort) error { return nil },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(ctx)
}

func TestFiveLoneNodesMakeOneProxy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(5)
		ctx, cancel := context.WithCancel(t.Context())
		for i := range 5 {
			startAgent(t, ctx, w, i, PolicySafe, nil)
		}
		time.Sleep(time.Minute)
		cancel()
		synctest.Wait()
		if n := w.clusters(); n != 1 {
			t.Errorf("clusters = %d, want 1", n)
		}
		if w.bridges != 1 {
			t.Errorf("bridges = %d, want 1", w.bridges)
		}
		if got := w.dbNames(); !slices.Equal(got, []string{"test"}) {
			t.Errorf("databases = %v, want one test", got)
		}
	})
}

func TestNonChooserActsAfterFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(2)
		ctx, cancel := context.WithCancel(t.Context())
		var started []time.Duration
		startAgent(t, ctx, w, 1, PolicySafe, &started) // server_2 only: its chooser's agent is silent
		time.Sleep(time.Minute)
		cancel()
		synctest.Wait()
		if len(started) != 1 {
			t.Fatalf("bridges = %d, want 1", len(started))
		}
		if started[0] < 10*time.Second {
			t.Errorf("the non-chooser bridged after %s, before FallbackAfter (10s)", started[0])
		}
		if w.clusters() != 1 {
			t.Errorf("clusters = %d, want 1", w.clusters())
		}
	})
}

func TestReportChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(2)
		for _, d := range w.dbs {
			d.tables = 1
		}
		ctx, cancel := context.WithCancel(t.Context())
		startAgent(t, ctx, w, 0, PolicyReport, nil)
		startAgent(t, ctx, w, 1, PolicyReport, nil)
		time.Sleep(time.Minute)
		cancel()
		synctest.Wait()
		if len(w.writes) != 0 {
			t.Errorf("report policy wrote %v", w.writes)
		}
		if got := w.dbNames(); !slices.Equal(got, []string{"test", "test"}) {
			t.Errorf("databases = %v", got)
		}
	})
}

func TestDataOnBothSidesKeepsEveryDB(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(3)
		for _, d := range w.dbs {
			d.tables = 2
		}
		ctx, cancel := context.WithCancel(t.Context())
		for i := range 3 {
			startAgent(t, ctx, w, i, PolicySafe, nil)
		}
		time.Sleep(time.Minute)
		cancel()
		synctest.Wait()
		names := w.dbNames()
		if len(names) != 3 || !slices.Contains(names, "test") {
			t.Errorf("databases = %v, want test and two renamed", names)
		}
		for _, n := range names {
			if strings.Count(n, "_") > 1 {
				t.Errorf("double rename: %s", n)
			}
		}
	})
}
