package e2e

import (
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

var systemTables = []string{"current_issues", "db_config", "server_config", "server_status", "table_config"}

// compareWithRecording compares every system table as seen through s with
// the recording <prefix>_<table>.json, by shape (field names and JSON types).
func compareWithRecording(t *testing.T, prefix string, s *r.Session) {
	t.Helper()
	for _, table := range systemTables {
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
// --cache-size 256) and compares each system table at phases 01-04 and 06
// with the recording, by shape.
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
