package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPeerEndpointsAndKey(t *testing.T) {
	p := Peer{Addrs: []string{"10.0.0.2", "::1", "node-a"}, Port: 29015}
	want := []string{"10.0.0.2:29015", "[::1]:29015", "node-a:29015"}
	if got := p.Endpoints(); !reflect.DeepEqual(got, want) {
		t.Errorf("Endpoints = %v", got)
	}
	q := Peer{Addrs: []string{"node-a", "::1", "10.0.0.2"}, Port: 29015, Source: "other"}
	if p.Key() != q.Key() {
		t.Errorf("keys differ by order: %s vs %s", p.Key(), q.Key())
	}
	p.ServerID = "b9c2f6f4"
	if p.Key() != "id:b9c2f6f4" {
		t.Errorf("Key = %s", p.Key())
	}
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name string
		in   []Peer
		want []Peer
	}{
		{"empty", nil, nil},
		{
			"same endpoints from two providers",
			[]Peer{
				{Addrs: []string{"10.0.0.1"}, Port: 29015, Source: "static"},
				{Addrs: []string{"10.0.0.1"}, Port: 29015, Source: "dns"},
			},
			[]Peer{{Addrs: []string{"10.0.0.1"}, Port: 29015, Source: "dns,static"}},
		},
		{
			"same server id: union of addresses, first fields win",
			[]Peer{
				{Addrs: []string{"10.0.0.1"}, Port: 29015, ServerID: "s1", Source: "mdns", Cluster: "prod"},
				{Addrs: []string{"172.17.0.2", "10.0.0.1"}, Port: 29015, ServerID: "s1", Source: "dockerlabels", DriverPort: 28015},
			},
			[]Peer{{Addrs: []string{"10.0.0.1", "172.17.0.2"}, Port: 29015, ServerID: "s1", Cluster: "prod", DriverPort: 28015, Source: "dockerlabels,mdns"}},
		},
		{
			"address-only peer attaches to the id peer with its endpoint",
			[]Peer{
				{Addrs: []string{"10.0.0.1"}, Port: 29015, Source: "static"},
				{Addrs: []string{"10.0.0.1", "fd00::1"}, Port: 29015, ServerID: "s1", Source: "mdns"},
			},
			[]Peer{{Addrs: []string{"10.0.0.1", "fd00::1"}, Port: 29015, ServerID: "s1", Source: "mdns,static"}},
		},
		{
			"different port is a different peer",
			[]Peer{
				{Addrs: []string{"10.0.0.1"}, Port: 29015, Source: "static"},
				{Addrs: []string{"10.0.0.1"}, Port: 29016, ServerID: "s1", Source: "mdns"},
			},
			[]Peer{
				{Addrs: []string{"10.0.0.1"}, Port: 29015, Source: "static"},
				{Addrs: []string{"10.0.0.1"}, Port: 29016, ServerID: "s1", Source: "mdns"},
			},
		},
		{
			"ambiguous endpoint stays separate",
			[]Peer{
				{Addrs: []string{"10.0.0.1"}, Port: 29015, Source: "static"},
				{Addrs: []string{"10.0.0.1"}, Port: 29015, ServerID: "old", Source: "mdns"},
				{Addrs: []string{"10.0.0.1"}, Port: 29015, ServerID: "new", Source: "dockerlabels"},
			},
			[]Peer{
				{Addrs: []string{"10.0.0.1"}, Port: 29015, Source: "static"},
				{Addrs: []string{"10.0.0.1"}, Port: 29015, ServerID: "new", Source: "dockerlabels"},
				{Addrs: []string{"10.0.0.1"}, Port: 29015, ServerID: "old", Source: "mdns"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := clonePeers(tc.in)
			got := Merge(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Merge =\n%+v\nwant\n%+v", got, tc.want)
			}
			if !reflect.DeepEqual(in, tc.in) {
				t.Errorf("Merge modified its input")
			}
		})
	}
}

// fakeProvider sends what the test pushes.
type fakeProvider struct {
	name string
	in   chan []Group
}

func newFake(name string) *fakeProvider { return &fakeProvider{name: name, in: make(chan []Group)} }

func (f *fakeProvider) Name() string { return f.name }

func (f *fakeProvider) Run(ctx context.Context, up chan<- []Group) {
	for {
		select {
		case <-ctx.Done():
			return
		case gs := <-f.in:
			select {
			case up <- gs:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (f *fakeProvider) send(t *testing.T, gs ...Group) {
	t.Helper()
	select {
	case f.in <- gs:
	case <-time.After(5 * time.Second):
		t.Fatal("provider blocked")
	}
}

func startManager(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return")
		}
	})
}

func waitUpdate(t *testing.T, m *Manager, ok func([]Peer) bool) []Peer {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ps := <-m.Updates():
			if ok(ps) {
				return ps
			}
		case <-deadline:
			t.Fatalf("no matching update; peers now %+v", m.Peers())
		}
	}
}

func peer(addr string, src string) Peer {
	return Peer{Addrs: []string{addr}, Port: 29015, Source: src}
}

func TestManagerMergesProviders(t *testing.T) {
	a, b := newFake("static"), newFake("mdns")
	m := NewManager(nil, a, b)
	clock := time.Unix(1000, 0)
	var clockMu sync.Mutex
	m.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	startManager(t, m)

	a.send(t, Group{Source: "flags", Peers: []Peer{peer("10.0.0.1", "")}}, Group{Source: "file", Peers: []Peer{peer("10.0.0.2", "")}})
	waitUpdate(t, m, func(ps []Peer) bool { return len(ps) == 2 })

	clockMu.Lock()
	clock = clock.Add(time.Minute)
	clockMu.Unlock()
	b.send(t, Group{Source: "mdns", Peers: []Peer{{Addrs: []string{"10.0.0.1"}, Port: 29015, ServerID: "s1"}}})
	ps := waitUpdate(t, m, func(ps []Peer) bool { return len(ps) == 2 && ps[1].ServerID == "s1" })
	if ps[1].Source != "mdns,static" || ps[0].Source != "static" {
		t.Errorf("sources: %+v", ps)
	}

	snap := m.Snapshot()
	if len(snap) != 3 {
		t.Fatalf("snapshot %+v", snap)
	}
	for _, s := range snap {
		want := time.Unix(1000, 0)
		if s.Peer.Source == "mdns" {
			want = want.Add(time.Minute)
		}
		if !s.FirstSeen.Equal(want) {
			t.Errorf("%s from %s first seen %v, want %v", s.Peer.Key(), s.Peer.Source, s.FirstSeen, want)
		}
	}

	// An empty group removes that group only.
	a.send(t, Group{Source: "file"})
	ps = waitUpdate(t, m, func(ps []Peer) bool { return len(ps) == 1 })
	if ps[0].ServerID != "s1" {
		t.Errorf("after removal: %+v", ps)
	}
	if got := m.Peers(); !reflect.DeepEqual(got, ps) {
		t.Errorf("Peers() = %+v, want %+v", got, ps)
	}
}

// A reader that does not read never blocks providers, and then sees the
// latest set only.
func TestManagerCoalesces(t *testing.T) {
	a := newFake("static")
	m := NewManager(nil, a)
	startManager(t, m)
	for i := range 50 {
		a.send(t, Group{Source: "flags", Peers: []Peer{{Addrs: []string{"10.0.0.1"}, Port: 29000 + i}}})
	}
	// The last send has been received; wait until it has been applied.
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		ps := m.Peers()
		return len(ps) > 0 && ps[0].Port == 29049, fmt.Sprintf("peers = %+v", ps)
	})
	select {
	case ps := <-m.Updates():
		if len(ps) != 1 || ps[0].Port != 29049 {
			t.Errorf("got %+v, want only the latest", ps)
		}
	default:
		t.Fatal("no pending update")
	}
	select {
	case ps := <-m.Updates():
		t.Errorf("second pending update %+v", ps)
	default:
	}
}

func TestManagerNoUpdateWithoutChange(t *testing.T) {
	a := newFake("static")
	m := NewManager(nil, a)
	startManager(t, m)
	g := Group{Source: "flags", Peers: []Peer{peer("10.0.0.1", "")}}
	a.send(t, g)
	waitUpdate(t, m, func(ps []Peer) bool { return len(ps) == 1 })
	a.send(t, g)
	a.send(t, g) // once this is received, the previous one has been applied
	select {
	case ps := <-m.Updates():
		t.Errorf("update without change: %+v", ps)
	default:
	}
}

func TestManagerFence(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	a := newFake("mdns")
	m := NewManager(slog.New(slog.NewTextHandler(logs, nil)), a)
	m.Fence = ClusterFence("prod")
	startManager(t, m)
	good := Peer{Addrs: []string{"10.0.0.1"}, Port: 29015, ServerID: "s1", Cluster: "prod"}
	bare := Peer{Addrs: []string{"10.0.0.3"}, Port: 29015}
	foreign := Peer{Addrs: []string{"10.0.0.2"}, Port: 29015, ServerID: "s2", Cluster: "staging"}
	for i := range 3 {
		g := Group{Source: "mdns", Peers: []Peer{good, bare, foreign}}
		if i == 2 {
			g.Peers = append(g.Peers, peer("10.0.0.9", ""))
		}
		a.send(t, g)
	}
	ps := waitUpdate(t, m, func(ps []Peer) bool { return len(ps) == 3 })
	for _, p := range ps {
		if p.ServerID == "s2" {
			t.Errorf("foreign peer kept: %+v", ps)
		}
	}
	if n := strings.Count(logs.String(), "ignoring discovered peer"); n != 1 {
		t.Errorf("fence logged %d times:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `staging`) {
		t.Errorf("log does not name the cluster:\n%s", logs.String())
	}
}

func TestManagerRunErrors(t *testing.T) {
	m := NewManager(nil, newFake("x"), newFake("x"))
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("duplicate names: %v", err)
	}
	if err := m.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestClusterFence(t *testing.T) {
	f := ClusterFence("prod")
	if f(Peer{}) != nil || f(Peer{Cluster: "prod"}) != nil {
		t.Error("fenced a good peer")
	}
	if err := f(Peer{Cluster: "dev"}); err == nil || !strings.Contains(err.Error(), `"dev"`) {
		t.Error("did not fence a foreign peer")
	}
}
