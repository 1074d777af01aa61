package agent

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// bigView is a merged cluster of n servers where every server brought its
// own `test` and `app` databases (with a table each in `app`): 2 collisions
// of n databases each, the worst a mass merge makes.
func bigView(n int) rethink.View {
	var v rethink.View
	var tests, apps []string
	for i := range n {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		v.Servers = append(v.Servers, rethink.Server{ID: id, Name: fmt.Sprintf("s%d", i), ClusterPort: 29015,
			CanonicalAddresses: []rethink.Addr{{Host: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Port: 29015}}})
		tid, aid := "t"+id, "a"+id
		tests, apps = append(tests, tid), append(apps, aid)
		v.DBs = append(v.DBs, rethink.DB{ID: tid, Name: "test"}, rethink.DB{ID: aid, Name: "app"})
		v.Tables = append(v.Tables, rethink.Table{ID: "x" + id, Name: "items", DBID: aid})
	}
	v.Self = v.Servers[0]
	v.Issues = []rethink.Issue{
		{Type: rethink.IssueDBNameCollision, Name: "test", IDs: tests},
		{Type: rethink.IssueDBNameCollision, Name: "app", IDs: apps},
	}
	return v
}

func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{5, 50, 500} {
		v := bigView(n)
		for _, policy := range []Policy{PolicySafe, PolicyMerge} {
			b.Run(fmt.Sprintf("%s/servers=%d", policy, n), func(b *testing.B) {
				for b.Loop() {
					Plan(policy, v, nil)
				}
			})
		}
	}
}

// BenchmarkClassify measures one pass over discovered peers against the
// view: half of them local, half foreign (probes answer at once).
func BenchmarkClassify(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		v := bigView(n / 2)
		var peers []discovery.Peer
		for i := range n {
			peers = append(peers, discovery.Peer{Addrs: []string{fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)}, Port: 29015})
		}
		c := newClassifier(nil, func(context.Context, netip.AddrPort) error { return nil })
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			for b.Loop() {
				c.classify(context.Background(), v, peers)
			}
		})
	}
}
