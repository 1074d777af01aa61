package node

import (
	"fmt"
	"slices"
	"testing"

	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

func connect(t *testing.T, s *simNode) *r.Session {
	t.Helper()
	sess, err := r.Connect(r.ConnectOpts{Address: fmt.Sprintf("127.0.0.1:%d", s.DriverPort())})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

// TestThroughDriverPort runs the agent's kind of queries with rethinkdb-go
// against a two-server cluster and a proxy.
func TestThroughDriverPort(t *testing.T) {
	s1 := startReady(t, serverCfg(t, dir(t, "s1"), "server_1"))
	s2 := startReady(t, serverCfg(t, dir(t, "s2"), "server_2"))
	p := startReady(t, proxyCfg(s1, s2))
	meshed(t, s1, s2, p)
	until(t, "collision", func() bool { return len(p.issueTypes()) == 1 }, p)

	sess := connect(t, p)
	var dbs []string
	if err := r.DBList().ReadAll(&dbs, sess); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dbs, []string{"rethinkdb", "test"}) {
		t.Errorf("dbList: %v", dbs)
	}
	_, err := r.DB("test").TableList().Run(sess)
	if err == nil || err.Error() != "rethinkdb: Database `test` is ambiguous; there are multiple databases with that name. in:\nr.DB(\"test\").TableList()" {
		t.Errorf("ambiguous: %v", err)
	}

	var issues []map[string]any
	if err := r.DB("rethinkdb").Table("current_issues").ReadAll(&issues, sess); err != nil {
		t.Fatal(err)
	}
	if len(issues) != 1 || issues[0]["type"] != "db_name_collision" {
		t.Fatalf("issues: %v", issues)
	}

	// The blog's fix.
	res, err := r.DB("rethinkdb").Table("db_config").Filter(r.Row.Field("name").Eq("test")).
		Update(func(row r.Term) any {
			return map[string]any{"name": row.Field("name").Add("_").Add(row.Field("id").Split("-").Nth(0))}
		}).RunWrite(sess)
	if err != nil || res.Replaced != 2 {
		t.Fatalf("fix: %+v %v", res, err)
	}
	if err := r.DB("rethinkdb").Table("current_issues").ReadAll(&issues, sess); err != nil || len(issues) != 0 {
		t.Fatalf("issues after fix: %v %v", issues, err)
	}

	// Writes to a read-only system table come back as errors.
	_, err = r.DB("rethinkdb").Table("server_status").Insert(map[string]any{"x": 1}).RunWrite(sess)
	if err == nil || err.Error() != "It's illegal to write to the `rethinkdb.server_status` table." {
		t.Errorf("server_status insert: %v", err)
	}

	// A changefeed on server_config sees a rename.
	cur, err := r.DB("rethinkdb").Table("server_config").Changes().Run(sess)
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	if _, err := r.DB("rethinkdb").Table("server_config").Get(s2.ID()).Update(map[string]any{"name": "server_2b"}).RunWrite(connect(t, s1)); err != nil {
		t.Fatal(err)
	}
	var ch map[string]any
	if !cur.Next(&ch) {
		t.Fatalf("feed ended: %v", cur.Err())
	}
	if nv := ch["new_val"].(map[string]any); nv["name"] != "server_2b" {
		t.Errorf("change: %v", ch)
	}
}
