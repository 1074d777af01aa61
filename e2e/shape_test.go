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
// --cache-size 256) and compares each system table at phases 01-06 with the
// recording, by shape.
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
}
