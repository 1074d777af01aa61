package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// fixture is a table created before the merge, and its documents.
type fixture struct {
	db, table string
	docs      []map[string]any
}

// The recorded scenario's data: on each side a `test` table with 3
// documents and an `app` database with one table (README "The scenario").
func sideFixtures(side string) []fixture {
	t := []map[string]any{
		{"id": 1, "n": 10, "origin": side},
		{"id": 2, "n": 20, "origin": side},
		{"id": 3, "n": 30, "origin": side},
	}
	var items []map[string]any
	for i := 0; i < 5; i++ {
		items = append(items, map[string]any{"id": fmt.Sprintf("%s-item-%d", side, i), "side": side, "qty": i})
	}
	return []fixture{
		{db: "test", table: side, docs: t},
		{db: "app", table: "items_" + side, docs: items},
	}
}

// createFixtures creates the tables and documents through s; the `app`
// database is created first.
func createFixtures(t *testing.T, s *r.Session, fx []fixture) {
	t.Helper()
	runWrite(t, s, r.DBCreate("app"))
	for _, f := range fx {
		runWrite(t, s, r.DB(f.db).TableCreate(f.table))
		res := runWrite(t, s, r.DB(f.db).Table(f.table).Insert(f.docs))
		if res.Inserted != len(f.docs) {
			t.Fatalf("insert into %s.%s: %+v, want %d inserted", f.db, f.table, res, len(f.docs))
		}
	}
}

// tableDocs reads a whole table and returns its documents as canonical JSON,
// sorted, so that two reads compare with ==.
func tableDocs(t testing.TB, s *r.Session, db, table string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	rows, err := harness.Query(ctx, s, r.DB(db).Table(table))
	if err != nil {
		return nil, err
	}
	return canonical(rows)
}

func canonical(rows []any) ([]string, error) {
	var out []string
	for _, row := range rows {
		b, err := json.Marshal(row)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	sort.Strings(out)
	return out, nil
}

// TestDataSurvivesMerge puts data on both sides, merges them through a
// proxy, resolves the collisions with the blog's query and checks that every
// document is still there, from every server, before and after the proxy
// stops.
func TestDataSurvivesMerge(t *testing.T) {
	t.Parallel()
	c := harness.New(t)
	s1 := c.StartServer(harness.ServerOptions{Name: "server_1"})
	s2 := c.StartServer(harness.ServerOptions{Name: "server_2", Join: []*harness.Node{s1}})
	s3 := c.StartServer(harness.ServerOptions{Name: "server_3"})
	ss1, ss2, ss3 := s1.Session(t), s2.Session(t), s3.Session(t)
	waitServers(t, mergeTimeout, []string{"server_1", "server_2"}, map[string]*r.Session{"server_1": ss1, "server_2": ss2})

	fxA, fxB := sideFixtures("t1"), sideFixtures("t3")
	createFixtures(t, ss1, fxA)
	createFixtures(t, ss3, fxB)

	// What each side holds before the merge, keyed by the database's uuid.
	type key struct{ dbID, table string }
	want := map[key][]string{}
	record := func(s *r.Session, fx []fixture) {
		ids := dbIDsByName(t, s)
		for _, f := range fx {
			if len(ids[f.db]) != 1 {
				t.Fatalf("before the merge, db_config has %s = %v", f.db, ids[f.db])
			}
			var docs []string
			harness.Eventually(t, mergeTimeout, func() (bool, string) {
				var err error
				docs, err = tableDocs(t, s, f.db, f.table)
				if err != nil {
					return false, err.Error()
				}
				return len(docs) == len(f.docs), fmt.Sprintf("%s.%s holds %d documents, want %d", f.db, f.table, len(docs), len(f.docs))
			})
			want[key{ids[f.db][0], f.table}] = docs
		}
	}
	record(ss1, fxA)
	record(ss3, fxB)

	p := c.StartProxy(s1, s3)
	ps := p.Session(t)
	all := map[string]*r.Session{"server_1": ss1, "server_2": ss2, "server_3": ss3, "proxy": ps}
	waitServers(t, mergeTimeout, []string{"server_1", "server_2", "server_3"}, all)
	harness.Eventually(t, mergeTimeout, func() (bool, string) {
		issues, err := issuesOfType(t, ss1, "db_name_collision")
		if err != nil {
			return false, err.Error()
		}
		return len(issues) == 2, fmt.Sprintf("db_name_collision issues: %v, want 2 (test and app)", issues)
	})
	issues, err := issuesOfType(t, ss1, "db_name_collision")
	if err != nil {
		t.Fatal(err)
	}
	for _, issue := range issues {
		name, _ := issue["info"].(map[string]any)["name"].(string)
		if err := checkDBNameCollision(issue, name); err != nil || (name != "test" && name != "app") {
			t.Errorf("issue %v: %v (name %q)", issue, err, name)
		}
	}

	if res := runWrite(t, ss3, blogFix()); res.Replaced != 4 || res.Errors != 0 {
		t.Fatalf("the blog's query: %+v, want replaced 4 (transcripts/step5_resolve.txt)", res)
	}
	harness.Eventually(t, mergeTimeout, func() (bool, string) {
		rows, err := systemTable(t, ss2, "current_issues")
		if err != nil {
			return false, err.Error()
		}
		return len(rows) == 0, fmt.Sprintf("current_issues after the fix: %v", rows)
	})

	check := func(sessions map[string]*r.Session) {
		t.Helper()
		for k, docs := range want {
			db := ""
			for _, f := range append(fxA, fxB...) {
				if f.table == k.table {
					db = f.db
				}
			}
			renamed := db + "_" + strings.Split(k.dbID, "-")[0]
			for via, s := range sessions {
				harness.Eventually(t, mergeTimeout, func() (bool, string) {
					got, err := tableDocs(t, s, renamed, k.table)
					if err != nil {
						return false, fmt.Sprintf("read %s.%s via %s: %v", renamed, k.table, via, err)
					}
					if strings.Join(got, "\n") != strings.Join(docs, "\n") {
						return false, fmt.Sprintf("%s.%s via %s holds\n%s\nwant\n%s", renamed, k.table, via,
							strings.Join(got, "\n"), strings.Join(docs, "\n"))
					}
					return true, ""
				})
			}
		}
	}
	check(all)

	if !p.Stop() {
		t.Errorf("the proxy did not exit within %v of SIGTERM", harness.StopTimeout)
	}
	check(map[string]*r.Session{"server_1": ss1, "server_2": ss2, "server_3": ss3})
}
