package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/shape"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// tableID is the id of db.table in table_config ("" if there is none).
func tableID(t *testing.T, s *r.Session, db, table string) string {
	t.Helper()
	for _, row := range mustSystemTable(t, s, "table_config") {
		if row["db"] == db && row["name"] == table {
			id, _ := row["id"].(string)
			return id
		}
	}
	return ""
}

var systemTables = []string{"current_issues", "db_config", "server_config", "server_status", "table_config"}

// compareWithRecording compares every system table as seen through s with
// the recording <prefix>_<table>.json, by shape (field names and JSON types).
func compareWithRecording(t *testing.T, prefix string, s *r.Session, tables ...string) {
	t.Helper()
	if len(tables) == 0 {
		tables = systemTables
	}
	for _, table := range tables {
		name := prefix + "_" + table + ".json"
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "rethinkdb-2.4.4", "system-tables", name))
			if err != nil {
				t.Fatal(err)
			}
			var recorded []any
			if err := json.Unmarshal(b, &recorded); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			rows, err := systemTable(t, s, table)
			if err != nil {
				t.Fatalf("read rethinkdb.%s: %v", table, err)
			}
			gotAny := make([]any, len(rows))
			for i, row := range rows {
				if gotAny[i], err = shape.Normalize(row); err != nil {
					t.Fatal(err)
				}
			}
			if diffs := shape.CompareDocuments(recorded, gotAny); len(diffs) > 0 {
				got, _ := json.MarshalIndent(gotAny, "", "  ")
				t.Errorf("rethinkdb.%s differs in shape from %s:\n  %s\ngot:\n%s", table, name, strings.Join(diffs, "\n  "), got)
			}
		})
	}
}

// TestSystemTableShapes replays the recorded scenario (README "The
// scenario", with the recorded options: named servers, HTTP admin on,
// --cache-size 256) and compares each system table at phases 01-13 with the
// recording, by shape (all but 07_server_3_just_restarted, a race).
func TestSystemTableShapes(t *testing.T) {
	t.Parallel()
	c := harness.New(t)
	opts := func(name string, join ...*harness.Node) harness.ServerOptions {
		return harness.ServerOptions{Name: name, Join: join, HTTPAdmin: true, CacheSizeMB: 256}
	}
	s1 := c.StartServer(opts("server_1"))
	s2 := c.StartServer(opts("server_2", s1))
	s3 := c.StartServer(opts("server_3"))
	ss1, ss2, ss3 := s1.Session(t), s2.Session(t), s3.Session(t)
	waitServers(t, mergeTimeout, []string{"server_1", "server_2"}, map[string]*r.Session{"server_1": ss1, "server_2": ss2})
	waitServers(t, mergeTimeout, []string{"server_3"}, map[string]*r.Session{"server_3": ss3})

	compareWithRecording(t, "01_initial_clusterA_via_server_1", ss1)
	compareWithRecording(t, "01_initial_clusterB_via_server_3", ss3)

	createFixtures(t, ss1, sideFixtures("t1"))
	createFixtures(t, ss3, sideFixtures("t3"))
	compareWithRecording(t, "02_before_proxy_clusterA_via_server_1", ss1)
	compareWithRecording(t, "02_before_proxy_clusterB_via_server_3", ss3)

	p := c.StartProxy(s1, s3)
	ps := p.Session(t)
	all := map[string]*r.Session{"server_1": ss1, "server_2": ss2, "server_3": ss3, "proxy": ps}
	waitServers(t, mergeTimeout, []string{"server_1", "server_2", "server_3"}, all)
	harness.Eventually(t, mergeTimeout, func() (bool, string) {
		for via, s := range all {
			issues, err := issuesOfType(t, s, "db_name_collision")
			if err != nil {
				return false, err.Error()
			}
			if len(issues) != 2 {
				return false, fmt.Sprintf("db_name_collision via %s: %v, want 2", via, issues)
			}
		}
		return true, ""
	})
	// Every server lists the proxy in connected_to, as recorded.
	harness.Eventually(t, mergeTimeout, func() (bool, string) {
		for via, s := range all {
			for _, name := range []string{"server_1", "server_2", "server_3"} {
				keys, err := connectedTo(t, s, name)
				if err != nil {
					return false, err.Error()
				}
				if len(keys) != 3 {
					return false, fmt.Sprintf("via %s, %s is connected to %v, want the 2 others and the proxy", via, name, keys)
				}
			}
		}
		return true, ""
	})
	compareWithRecording(t, "03_after_proxy_via_proxy_6003", ps)
	compareWithRecording(t, "03_after_proxy_via_server_1", ss1)
	compareWithRecording(t, "03_after_proxy_via_server_3", ss3)

	if res := runWrite(t, ss1, blogFix()); res.Replaced != 4 {
		t.Fatalf("the blog's query: %+v, want replaced 4", res)
	}
	harness.Eventually(t, mergeTimeout, func() (bool, string) {
		for via, s := range map[string]*r.Session{"server_1": ss1, "server_3": ss3} {
			rows, err := systemTable(t, s, "current_issues")
			if err != nil || len(rows) != 0 {
				return false, fmt.Sprintf("current_issues via %s: %v %v", via, rows, err)
			}
		}
		return true, ""
	})
	compareWithRecording(t, "04_after_resolve_via_server_1", ss1)
	compareWithRecording(t, "04_after_resolve_via_server_3", ss3)

	// Phase 05, as recorded (transcripts/step8_proxy_driver.txt, then
	// step7a_move_table.txt): writes through the proxy, then table moves.
	ids := dbIDsByName(t, ss1)
	var appA, testB string // the renamed `app` of cluster A, `test` of cluster B
	for name := range ids {
		if strings.HasPrefix(name, "app_") && tableID(t, ss1, name, "items_t1") != "" {
			appA = name
		}
		if strings.HasPrefix(name, "test_") && tableID(t, ss1, name, "t3") != "" {
			testB = name
		}
	}
	if appA == "" || testB == "" {
		t.Fatalf("cannot find the renamed databases in %v", ids)
	}
	testA := ""
	for name := range ids {
		if strings.HasPrefix(name, "test_") && name != testB {
			testA = name
		}
	}
	if res := runWrite(t, ps, r.DB(testB).Table("t3").Insert(map[string]any{"id": 100, "via": "proxy"})); res.Inserted != 1 {
		t.Fatalf("insert through the proxy: %+v", res)
	}
	runWrite(t, ps, r.DB(appA).TableCreate("via_proxy"))
	if res := runWrite(t, ps, r.DB(appA).Table("via_proxy").Insert(map[string]any{"id": 100, "via": "proxy"})); res.Inserted != 1 {
		t.Fatalf("insert through the proxy: %+v", res)
	}
	moveTable := func(db, table, to string) (r.WriteResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		return r.DB("rethinkdb").Table("table_config").Get(tableID(t, ss1, db, table)).
			Update(map[string]any{"db": to}).RunWrite(ss1, r.RunOpts{Context: ctx})
	}
	for _, mv := range [][2]string{{testA, "t1"}, {testB, "t3"}} {
		if res, err := moveTable(mv[0], mv[1], appA); err != nil || res.Replaced != 1 {
			t.Fatalf("move %s.%s to %s: %+v, %v", mv[0], mv[1], appA, res, err)
		}
	}
	wantErr := "The change you're trying to make to `rethinkdb.table_config` has the wrong format. Database `no_such_db` does not exist."
	if res, _ := moveTable(appA, "t3", "no_such_db"); res.Errors != 1 || res.FirstError != wantErr {
		t.Errorf("move into a missing database: %+v, want the error %q", res, wantErr)
	}
	runWrite(t, ss1, r.DB(testB).TableCreate("t1"))
	wantErr = "Can't rename table `" + testB + ".t1` to `" + appA + ".t1` because table `" + appA + ".t1` already exists."
	if res, _ := moveTable(testB, "t1", appA); res.Errors != 1 || res.FirstError != wantErr {
		t.Errorf("move onto an existing name: %+v, want the error %q", res, wantErr)
	}
	compareWithRecording(t, "05_after_table_moves", ss1, "table_config")

	p.Stop()
	harness.Eventually(t, mergeTimeout, func() (bool, string) {
		for via, s := range map[string]*r.Session{"server_1": ss1, "server_2": ss2, "server_3": ss3} {
			for _, name := range []string{"server_1", "server_2", "server_3"} {
				keys, err := connectedTo(t, s, name)
				if err != nil {
					return false, err.Error()
				}
				if strings.Join(keys, ",") != strings.Join(others(name), ",") {
					return false, fmt.Sprintf("via %s, %s is connected to %v, want %v", via, name, keys, others(name))
				}
			}
		}
		return true, ""
	})
	compareWithRecording(t, "06_30s_after_proxy_stop_via_server_1", ss1)
	compareWithRecording(t, "06_30s_after_proxy_stop_via_server_3", ss3)

	// 07: server_3 down. (07_server_3_just_restarted is not compared: it
	// is a moment of about 3 s in the recording, a race here.)
	s3.Stop()
	waitState(t, "server_1", ss1, 2, "table_availability", 2)
	compareWithRecording(t, "07_server_3_down_via_server_1", ss1)

	// 08: server_3 restarted without --join; server_1 and server_2 dial it
	// again (the address is kept in memory).
	s3.Restart(opts("server_3"))
	ss3 = s3.Session(t)
	waitState(t, "server_1", ss1, 3, "", 0)
	waitState(t, "server_3", ss3, 3, "", 0)
	compareWithRecording(t, "08_after_server_3_restart_via_server_1", ss1)
	compareWithRecording(t, "08_after_server_3_restart_via_server_3", ss3)

	// 09: the whole cluster restarted, server_3 without --join: two
	// partitions.
	s3.Stop()
	s2.Stop()
	s1.Stop()
	s1.Restart(opts("server_1"))
	s2.Restart(opts("server_2", s1))
	s3.Restart(opts("server_3"))
	ss1, ss3 = s1.Session(t), s3.Session(t)
	waitState(t, "server_1", ss1, 2, "table_availability", 2)
	waitState(t, "server_3", ss3, 1, "table_availability", 4)
	compareWithRecording(t, "09_full_restart_s3_nojoin_via_server_1", ss1)
	compareWithRecording(t, "09_full_restart_s3_nojoin_via_server_3", ss3)

	// 10: a fresh node named server_1, alone.
	o4 := opts("server_1")
	o4.Label = "s4 (a second server_1)"
	s4 := c.StartServer(o4)
	ss4 := s4.Session(t)
	waitState(t, "dup server_1", ss4, 1, "", 0)
	compareWithRecording(t, "10_dup_name_node_alone_via_6004", ss4)

	// 11: a second proxy bridges everything: server_name_collision.
	p2 := c.StartProxy(s1, s3, s4)
	_ = p2
	waitState(t, "server_1", ss1, 4, "server_name_collision", 1)
	waitState(t, "dup server_1", ss4, 4, "server_name_collision", 1)
	waitMeshed(t, "server_1", ss1, 4) // 3 servers and the proxy each
	compareWithRecording(t, "11_server_name_collision_via_dup_node_6004", ss4)
	compareWithRecording(t, "11_server_name_collision_via_server_1", ss1)

	// 12: the duplicate renamed through server_config
	// (transcripts/step7b_rename.txt).
	rename := func(id, name string) (r.WriteResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		return r.DB("rethinkdb").Table("server_config").Get(id).Update(map[string]any{"name": name}).
			RunWrite(ss1, r.RunOpts{Context: ctx})
	}
	if res, err := rename(s4.ID, "server_4"); err != nil || res.Replaced != 1 {
		t.Fatalf("rename the duplicate server_1 to server_4: %+v, %v", res, err)
	}
	waitState(t, "server_1", ss1, 4, "", 0)
	waitMeshed(t, "server_1", ss1, 4)
	compareWithRecording(t, "12_after_server_rename_via_server_1", ss1)
	wantErr = "Cannot rename server `server_4` to `server_2` because server `server_2` already exists."
	if res, _ := rename(s4.ID, "server_2"); res.Errors != 1 || res.FirstError != wantErr {
		t.Errorf("rename onto a used name: %+v, want the error %q", res, wantErr)
	}

	// 13: a node named server_2 joins directly; both server_2 are renamed
	// name_<first uuid block> (transcripts/step7c_dup_join_direct.txt).
	o5 := opts("server_2", s1)
	o5.Label = "s5 (a second server_2)"
	c.StartServer(o5)
	waitState(t, "server_1", ss1, 5, "server_name_collision", 1)
	if res := runWrite(t, ss1, serverFix()); res.Replaced != 2 {
		t.Fatalf("rename the colliding servers: %+v, want replaced 2", res)
	}
	waitState(t, "server_1", ss1, 5, "", 0)
	waitMeshed(t, "server_1", ss1, 5) // the newcomer meets the others one by one
	compareWithRecording(t, "13_final_via_server_1", ss1)
}

// serverFix is the blog's query applied to server names.
func serverFix() r.Term {
	return r.DB("rethinkdb").Table("current_issues").
		Filter(map[string]any{"type": "server_name_collision"}).
		ConcatMap(func(row r.Term) r.Term { return row.Field("info").Field("ids") }).
		ForEach(func(id r.Term) r.Term {
			return r.DB("rethinkdb").Table("server_config").Get(id).
				Update(func(server r.Term) any {
					return map[string]any{"name": server.Field("name").Add("_").Add(id.Split("-").Nth(0))}
				})
		})
}

// waitMeshed waits until every server in server_status (as seen through s)
// is connected to n others, servers and proxies: the recordings were taken
// with the mesh whole, and a server that just joined through one --join
// (phase 13, logs/s5.log) meets the others, and the proxy, one by one.
func waitMeshed(t *testing.T, via string, s *r.Session, n int) {
	t.Helper()
	harness.Eventually(t, mergeTimeout, func() (bool, string) {
		rows, err := systemTable(t, s, "server_status")
		if err != nil {
			return false, fmt.Sprintf("server_status via %s: %v", via, err)
		}
		for _, row := range rows {
			network, _ := row["network"].(map[string]any)
			ct, _ := network["connected_to"].(map[string]any)
			k := 0
			for _, v := range ct {
				if v == true {
					k++
				}
			}
			if k != n {
				return false, fmt.Sprintf("via %s, %v (%v) is connected to %v, want %d", via, row["name"], row["id"], ct, n)
			}
		}
		return true, ""
	})
}

// waitState waits until s sees n servers in server_status and exactly
// issues current issues, all of type typ.
func waitState(t *testing.T, via string, s *r.Session, n int, typ string, issues int) {
	t.Helper()
	harness.Eventually(t, mergeTimeout, func() (bool, string) {
		names, err := serverNames(t, s)
		if err != nil {
			return false, fmt.Sprintf("server_status via %s: %v", via, err)
		}
		rows, err := systemTable(t, s, "current_issues")
		if err != nil {
			return false, fmt.Sprintf("current_issues via %s: %v", via, err)
		}
		ok := len(names) == n && len(rows) == issues
		for _, row := range rows {
			ok = ok && row["type"] == typ
		}
		return ok, fmt.Sprintf("via %s: servers %v, issues %v; want %d servers, %d issues of type %q", via, names, rows, n, issues, typ)
	})
}
