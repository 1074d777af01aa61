package node

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

func TestJoinMakesFullMesh(t *testing.T) {
	s1 := startReady(t, serverCfg(t, dir(t, "s1"), "server_1"))
	s2 := startReady(t, serverCfg(t, dir(t, "s2"), "server_2", s1))
	s3 := startReady(t, serverCfg(t, dir(t, "s3"), "server_3", s2))
	meshed(t, s1, s2, s3)

	for _, s := range []*simNode{s1, s2, s3} {
		until(t, "three servers", func() bool { return len(s.serverNames()) == 3 }, s)
		until(t, "server_1's test db", func() bool {
			dbs, _ := s.Backend().DBs(context.Background())
			return len(dbs) == 1 && dbs[0].Name == "test"
		}, s)
	}
	// s2 connected before opening its driver port (logs/s2.log).
	if c, d := s2.log.index(`Connected to server "server_1"`), s2.log.index("Listening for client driver connections"); c < 0 || d < c {
		t.Errorf("s2 log order wrong:\n%s", s2.log)
	}
	if s1.log.index("Initializing directory") < 0 || s1.log.index(`Server ready, "server_1" `+s1.ID()) < 0 {
		t.Errorf("s1 log:\n%s", s1.log)
	}
	// connected_to lists the two other servers in every server_status row.
	until(t, "connected_to complete", func() bool {
		for _, r := range s1.rows("server_status") {
			ct := r["network"].(map[string]any)["connected_to"].(map[string]any)
			if len(ct) != 2 {
				return false
			}
		}
		return true
	}, s1, s2, s3)
}

func TestJoinUnreachableKeepsDriverPortClosed(t *testing.T) {
	// Reserve a port by starting a node, then stop it: its port is free.
	tmp := startReady(t, serverCfg(t, dir(t, "tmp"), "tmp"))
	port := tmp.ClusterPort()
	tmp.stop()

	cfg := serverCfg(t, dir(t, "jt"), "jt_1")
	cfg.Join = []string{"127.0.0.1:" + strconv.Itoa(port)}
	jt := start(t, cfg)
	if jt.DriverPort() != 0 || jt.log.index("Listening for client driver connections") >= 0 {
		t.Fatalf("driver port opened without a reachable join:\n%s", jt.log)
	}
	// Once something answers at the join address, the server completes.
	target := serverCfg(t, dir(t, "target"), "target")
	target.ClusterPort = port
	startReady(t, target)
	jt.waitReady()
	if jt.DriverPort() == 0 {
		t.Fatal("no driver port after joining")
	}
}

func TestProxyMergesClusters(t *testing.T) {
	ctx := context.Background()
	s1 := startReady(t, serverCfg(t, dir(t, "s1"), "server_1"))
	s2 := startReady(t, serverCfg(t, dir(t, "s2"), "server_2", s1))
	s3 := startReady(t, serverCfg(t, dir(t, "s3"), "server_3"))
	meshed(t, s1, s2)

	b1, b3 := s1.Backend(), s3.Backend()
	for _, c := range []struct {
		b     reql.Backend
		table string
	}{{b1, "t1"}, {b3, "t3"}} {
		if _, err := c.b.TableCreate(ctx, "test", c.table, reql.TableCreateOpts{}); err != nil {
			t.Fatal(err)
		}
		tb, err := c.b.Table(ctx, "test", c.table, reql.TableOpts{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := tb.Insert(ctx, []map[string]any{{"id": 1.0, "origin": c.table}, {"id": 2.0}, {"id": 3.0}}, "error")
		mustOK(t, s, err)
		if _, err := c.b.DBCreate(ctx, "app"); err != nil {
			t.Fatal(err)
		}
	}

	p := startReady(t, proxyCfg(s1, s3))
	meshed(t, s1, s2, s3, p)
	if p.log.index("Proxy ready, proxy-"+p.ID()) < 0 {
		t.Errorf("proxy log:\n%s", p.log)
	}
	// server_1 shows the proxy only as a connected_to key.
	until(t, "proxy key in connected_to", func() bool {
		for _, r := range s1.rows("server_status") {
			if r["id"] == s1.ID() {
				_, ok := r["network"].(map[string]any)["connected_to"].(map[string]any)["proxy-"+p.ID()]
				return ok
			}
		}
		return false
	}, s1)
	if s1.log.index("Connected to proxy proxy-"+p.ID()) < 0 {
		t.Errorf("server_1 did not log the proxy:\n%s", s1.log)
	}

	for _, s := range []*simNode{s1, s2, s3, p} {
		until(t, "db_name_collision everywhere", func() bool {
			return slices.Equal(s.issueTypes(), []string{"db_name_collision", "db_name_collision"})
		}, s)
		if names := s.serverNames(); len(names) != 3 {
			t.Errorf("%v", names)
		}
	}
	if _, err := p.Backend().Table(ctx, "test", "t1", reql.TableOpts{}); err == nil ||
		err.Error() != "Database `test` is ambiguous; there are multiple databases with that name." {
		t.Errorf("ambiguous db: got %v", err)
	}
	issues := s3.rows("current_issues")
	i := issues[0]
	if i["critical"] != true || !strings.HasPrefix(i["description"].(string), "There are multiple databases named `app`.") ||
		len(i["info"].(map[string]any)["ids"].([]any)) != 2 {
		t.Errorf("issue: %v", i)
	}
	assertShapes(t, "03_after_proxy_via_server_1", s1)

	// The blog's fix, run through the proxy: rename every colliding db.
	dbc, err := p.Backend().Table(ctx, "rethinkdb", "db_config", reql.TableOpts{})
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := dbc.Scan(ctx)
	for _, r := range rows {
		m := r.(map[string]any)
		id := m["id"].(string)
		s, err := dbc.Modify(ctx, id, update(map[string]any{"name": m["name"].(string) + "_" + id[:8]}))
		mustOK(t, s, err)
		if s.Replaced != 1 {
			t.Errorf("rename: %+v", s)
		}
	}
	p.stop()
	for _, s := range []*simNode{s1, s2, s3} {
		until(t, "no issues", func() bool { return len(s.issueTypes()) == 0 }, s)
	}
	// The servers stay meshed without the proxy.
	meshed(t, s1, s2, s3)

	// Data written on one side is readable from the other (forwarding).
	var t3db string
	dbs, _ := b1.DBs(ctx)
	for _, d := range dbs {
		if strings.HasPrefix(d.Name, "test_") {
			if tl, _ := b1.TableList(ctx, d.Name); slices.Contains(tl, "t3") {
				t3db = d.Name
			}
		}
	}
	tb, err := b1.Table(ctx, t3db, "t3", reql.TableOpts{})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := tb.Scan(ctx)
	if err != nil || len(docs) != 3 {
		t.Fatalf("scan t3 via server_1: %v %v", docs, err)
	}
}
