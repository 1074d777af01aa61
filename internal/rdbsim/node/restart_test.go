package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

// restartCfg is cfg for a restart on the same cluster port, with the given
// --join list.
func restartCfg(s *simNode, join ...*simNode) Config {
	cfg := s.cfg
	cfg.Log = nil
	cfg.ClusterPort = s.ClusterPort()
	cfg.Join = nil
	for _, j := range join {
		cfg.Join = append(cfg.Join, j.addr())
	}
	return cfg
}

func TestRestartedServerIsRedialled(t *testing.T) {
	ctx := context.Background()
	s1 := startReady(t, serverCfg(t, dir(t, "s1"), "server_1"))
	s2 := startReady(t, serverCfg(t, dir(t, "s2"), "server_2", s1))
	s3 := startReady(t, serverCfg(t, dir(t, "s3"), "server_3", s1))
	meshed(t, s1, s2, s3)
	waitDBs(t, s3, 1)
	if _, err := s3.Backend().TableCreate(ctx, "test", "t3", reql.TableCreateOpts{}); err != nil {
		t.Fatal(err)
	}
	tb, _ := s3.Backend().Table(ctx, "test", "t3", reql.TableOpts{})
	s, err := tb.Insert(ctx, []map[string]any{{"id": "a"}}, "error")
	mustOK(t, s, err)
	until(t, "t3 known on s1", func() bool { return len(s1.rows("table_config")) == 1 }, s1)

	s3.stop()
	until(t, "s3 gone", func() bool { return len(s1.serverNames()) == 2 }, s1)
	s1.log.wait(t, `Disconnected from server "server_3" `+s3.ID())
	// 07: the table is unavailable, its config row is the error form.
	assertShapes(t, "07_server_3_down_via_server_1", s1)
	if got := s1.issueTypes(); !slices.Equal(got, []string{"table_availability"}) {
		t.Fatalf("issues: %v", got)
	}
	tb1, err := s1.Backend().Table(ctx, "test", "t3", reql.TableOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb1.Scan(ctx); err == nil {
		t.Fatal("scan of an unreachable table succeeded")
	}

	// Restarted without --join: its old peers dial it (07 -> 08).
	r3 := start(t, restartCfg(s3))
	r3.waitReady()
	meshed(t, s1, s2, r3)
	if r3.ID() != s3.ID() {
		t.Fatalf("restart changed the server id: %s -> %s", s3.ID(), r3.ID())
	}
	r3.log.wait(t, "WARNING: ignoring --server-name because this server already has a name.")
	until(t, "t3 available", func() bool { return len(s1.issueTypes()) == 0 }, s1)
	docs, err := tb1.Scan(ctx)
	if err != nil || len(docs) != 1 {
		t.Fatalf("t3 after restart: %v %v", docs, err)
	}
	assertShapes(t, "08_after_server_3_restart_via_server_1", s1)
}

func TestFullRestartWithoutJoinStaysSplit(t *testing.T) {
	ctx := context.Background()
	s1 := startReady(t, serverCfg(t, dir(t, "s1"), "server_1"))
	s2 := startReady(t, serverCfg(t, dir(t, "s2"), "server_2", s1))
	s3 := startReady(t, serverCfg(t, dir(t, "s3"), "server_3", s1))
	meshed(t, s1, s2, s3)
	for _, s := range []*simNode{s1, s3} {
		waitDBs(t, s, 1)
		if _, err := s.Backend().TableCreate(ctx, "test", "t_"+s.ID()[:4], reql.TableCreateOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	until(t, "both tables everywhere", func() bool {
		return len(s1.rows("table_config")) == 2 && len(s3.rows("table_config")) == 2
	}, s1, s3)
	s3.stop()
	s2.stop()
	s1.stop()

	r1 := startReady(t, restartCfg(s1))
	r2 := startReady(t, restartCfg(s2, r1))
	r3 := startReady(t, restartCfg(s3))
	meshed(t, r1, r2)
	// Nobody remembers server_3's address: no dialer targets it, so the
	// split is permanent (09).
	r1.mu.Lock()
	_, dialling := r1.dialers["peer:"+r3.ID()]
	r1.mu.Unlock()
	if dialling || r1.connectedTo(r3.ID()) || r3.connectedTo(r1.ID()) {
		t.Fatal("server_3 was reached after a full restart without --join")
	}
	until(t, "availability issues", func() bool {
		return slices.Equal(r1.issueTypes(), []string{"table_availability"}) &&
			slices.Equal(r3.issueTypes(), []string{"table_availability"})
	}, r1, r3)
	if n := len(r3.serverNames()); n != 1 {
		t.Errorf("server_3 sees %d servers", n)
	}
	if n := len(r3.rows("db_config")); n != 1 {
		t.Errorf("server_3 forgot the metadata: %d dbs", n)
	}
	assertShapes(t, "09_full_restart_s3_nojoin_via_server_3", r3)
	assertShapes(t, "09_full_restart_s3_nojoin_via_server_1", r1)
}

func TestReplacedServerAtKnownAddressIsRefused(t *testing.T) {
	s1 := startReady(t, serverCfg(t, dir(t, "s1"), "server_1"))
	s2 := startReady(t, serverCfg(t, dir(t, "s2"), "server_2", s1))
	meshed(t, s1, s2)
	s2.stop()
	until(t, "s2 gone", func() bool { return !s1.connectedTo(s2.ID()) }, s1)

	// A different server (fresh data directory) takes server_2's address.
	cfg := serverCfg(t, dir(t, "s2new"), "server_2b")
	cfg.ClusterPort = s2.ClusterPort()
	n := startReady(t, cfg)
	s1.log.wait(t, "Refusing connection to "+s2.addr())
	if s1.connectedTo(n.ID()) {
		t.Fatal("server_1 connected to the impostor")
	}
}

func TestServerNameCollisionAndRename(t *testing.T) {
	ctx := context.Background()
	s1 := startReady(t, serverCfg(t, dir(t, "s1"), "server_1"))
	s2 := startReady(t, serverCfg(t, dir(t, "s2"), "server_2", s1))
	s3 := startReady(t, serverCfg(t, dir(t, "s3"), "server_3", s1))
	dup := startReady(t, serverCfg(t, dir(t, "s4"), "server_1"))
	// As in the recordings, the databases were already de-duplicated.
	if _, _, err := dup.Backend().DBDrop(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	waitDBs(t, s2, 1)
	if _, err := s2.Backend().TableCreate(ctx, "test", "t2", reql.TableCreateOpts{}); err != nil {
		t.Fatal(err)
	}
	p := startReady(t, proxyCfg(s1, dup))
	meshed(t, s1, s2, s3, dup, p)
	until(t, "server_name_collision", func() bool {
		got := s1.issueTypes()
		return slices.Contains(got, "server_name_collision")
	}, s1)
	assertShapes(t, "11_server_name_collision_via_server_1", s1)

	// In server_3's connected_to, one of the two server_1 gets a conflict key.
	until(t, "conflict key", func() bool {
		for _, r := range s1.rows("server_status") {
			if r["id"] != s3.ID() {
				continue
			}
			ct := r["network"].(map[string]any)["connected_to"].(map[string]any)
			_, a := ct["server_1__conflict__"+underscored(dup.ID())]
			_, b := ct["server_1__conflict__"+underscored(s1.ID())]
			_, plain := ct["server_1"]
			return plain && (a != b)
		}
		return false
	}, s1, s3)

	sc, _ := s3.Backend().Table(ctx, "rethinkdb", "server_config", reql.TableOpts{})
	s, err := sc.Modify(ctx, dup.ID(), update(map[string]any{"name": "server_4"}))
	mustOK(t, s, err)
	until(t, "collision gone", func() bool { return len(s1.issueTypes()) == 0 && len(dup.issueTypes()) == 0 }, s1, dup)
	s, err = sc.Modify(ctx, dup.ID(), update(map[string]any{"name": "server_2"}))
	if err != nil || s.FirstError != "Cannot rename server `server_4` to `server_2` because server `server_2` already exists." {
		t.Fatalf("rename to a used name: %+v %v", s, err)
	}

	// The owner persisted the new name: it survives a restart with the old
	// --server-name flag.
	until(t, "dup renamed", func() bool {
		dup.mu.Lock()
		defer dup.mu.Unlock()
		return dup.meta.Servers[dup.ID()].Name == "server_4"
	}, dup)
	p.stop()
	dup.stop()
	r := startReady(t, restartCfg(dup))
	r.log.wait(t, `Server ready, "server_4" `+dup.ID())
	r.log.wait(t, "WARNING: ignoring --server-name because this server already has a name.")
}

func underscored(id string) string {
	b := []byte(id)
	for i := range b {
		if b[i] == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}

func TestMoveTableKeepsData(t *testing.T) {
	ctx := context.Background()
	s1 := startReady(t, serverCfg(t, dir(t, "s1"), "server_1"))
	s2 := startReady(t, serverCfg(t, dir(t, "s2"), "server_2", s1))
	meshed(t, s1, s2)
	b1, b2 := s1.Backend(), s2.Backend()
	until(t, "test db on s2", func() bool { dbs, _ := b2.DBs(ctx); return len(dbs) == 1 }, s2)
	if _, err := b2.DBCreate(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := b1.TableCreate(ctx, "test", "t1", reql.TableCreateOpts{}); err != nil {
		t.Fatal(err)
	}
	tb, _ := b1.Table(ctx, "test", "t1", reql.TableOpts{})
	s, err := tb.Insert(ctx, []map[string]any{{"id": 1.0, "n": 10.0}, {"id": 2.0}}, "error")
	mustOK(t, s, err)

	// Move it through server_2, which does not host it.
	tc, _ := b2.Table(ctx, "rethinkdb", "table_config", reql.TableOpts{})
	until(t, "t1 on s2", func() bool { rows, _ := tc.Scan(ctx); return len(rows) == 1 }, s2)
	rows, _ := tc.Scan(ctx)
	id := rows[0].(map[string]any)["id"].(string)
	s, err = tc.Modify(ctx, id, update(map[string]any{"db": "no_such_db"}))
	if err != nil || s.FirstError != "The change you're trying to make to `rethinkdb.table_config` has the wrong format. Database `no_such_db` does not exist." {
		t.Fatalf("move to a missing db: %+v %v", s, err)
	}
	s, err = tc.Modify(ctx, id, update(map[string]any{"db": "app"}))
	mustOK(t, s, err)
	if s.Replaced != 1 {
		t.Fatalf("%+v", s)
	}
	until(t, "move seen by s1", func() bool {
		l, _ := b1.TableList(ctx, "app")
		return slices.Equal(l, []string{"t1"})
	}, s1)
	moved, err := b1.Table(ctx, "app", "t1", reql.TableOpts{})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := moved.Scan(ctx)
	if err != nil || len(docs) != 2 {
		t.Fatalf("data after move: %v %v", docs, err)
	}

	// A second t1 in test cannot move into app.
	if _, err := b2.TableCreate(ctx, "test", "t1", reql.TableCreateOpts{}); err != nil {
		t.Fatal(err)
	}
	tc1, _ := b1.Table(ctx, "rethinkdb", "table_config", reql.TableOpts{})
	var id2 string
	until(t, "second t1 on s1", func() bool {
		rows, _ := tc1.Scan(ctx)
		for _, r := range rows {
			if m := r.(map[string]any); m["db"] == "test" {
				id2 = m["id"].(string)
			}
		}
		return id2 != ""
	}, s1)
	s, err = tc1.Modify(ctx, id2, update(map[string]any{"db": "app"}))
	if err != nil || s.FirstError != "Can't rename table `test.t1` to `app.t1` because table `app.t1` already exists." {
		t.Fatalf("move onto an existing name: %+v %v", s, err)
	}
}

func TestLostPeerForgottenAfterReconnectTimeout(t *testing.T) {
	cfg := serverCfg(t, dir(t, "s1"), "server_1")
	cfg.ReconnectTimeout = 300 * time.Millisecond
	s1 := startReady(t, cfg)
	s2 := startReady(t, serverCfg(t, dir(t, "s2"), "server_2", s1))
	meshed(t, s1, s2)
	s2.stop()
	until(t, "dialer for server_2 started", func() bool {
		s1.mu.Lock()
		defer s1.mu.Unlock()
		return s1.dialers["peer:"+s2.ID()] != nil
	}, s1)
	until(t, "dialer for server_2 given up", func() bool {
		s1.mu.Lock()
		defer s1.mu.Unlock()
		return s1.dialers["peer:"+s2.ID()] == nil
	}, s1)
}
