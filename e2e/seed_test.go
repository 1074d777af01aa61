package e2e

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// TestSeedBlogPost follows the seed blog post step by step: a two-server
// cluster, a third server started alone, a proxy joined to both, the `test`
// database collision fixed with the post's query, the proxy stopped, and the
// three servers still one cluster.
func TestSeedBlogPost(t *testing.T) {
	t.Parallel()
	c := harness.New(t)

	s1 := c.StartServer(harness.ServerOptions{Name: "server_1"})
	s2 := c.StartServer(harness.ServerOptions{Name: "server_2", Join: []*harness.Node{s1}})
	s3 := c.StartServer(harness.ServerOptions{Name: "server_3"})
	ss1, ss2, ss3 := s1.Session(t), s2.Session(t), s3.Session(t)

	waitServers(t, mergeTimeout, []string{"server_1", "server_2"}, map[string]*r.Session{"server_1": ss1, "server_2": ss2})
	waitServers(t, mergeTimeout, []string{"server_3"}, map[string]*r.Session{"server_3": ss3})
	for via, s := range map[string]*r.Session{"server_1": ss1, "server_3": ss3} {
		if issues := mustSystemTable(t, s, "current_issues"); len(issues) != 0 {
			t.Fatalf("current_issues via %s before the merge: %v, want none", via, issues)
		}
	}

	// The blog's proxy command, minus --server-name, which 2.4.4 refuses.
	p := c.StartProxy(s1, s3)
	ps := p.Session(t)
	all := map[string]*r.Session{"server_1": ss1, "server_2": ss2, "server_3": ss3, "proxy": ps}
	waitServers(t, mergeTimeout, []string{"server_1", "server_2", "server_3"}, all)

	// One db_name_collision for `test`, the same from every server and
	// through the proxy.
	var issue map[string]any
	harness.Eventually(t, mergeTimeout, func() (bool, string) {
		var first map[string]any
		for via, s := range all {
			issues, err := systemTable(t, s, "current_issues")
			if err != nil {
				return false, fmt.Sprintf("current_issues via %s: %v", via, err)
			}
			if len(issues) != 1 || issues[0]["type"] != "db_name_collision" {
				return false, fmt.Sprintf("current_issues via %s: %v, want one db_name_collision", via, issues)
			}
			if first != nil && !reflect.DeepEqual(first, issues[0]) {
				return false, fmt.Sprintf("the issue differs between servers:\n%v\n%v", first, issues[0])
			}
			first = issues[0]
		}
		issue = first
		return true, ""
	})
	if err := checkDBNameCollision(issue, "test"); err != nil {
		t.Fatalf("db_name_collision issue %v: %v", issue, err)
	}
	testIDs := dbIDsByName(t, ss1)["test"]
	sort.Strings(testIDs)
	var issueIDs []string
	for _, id := range issue["info"].(map[string]any)["ids"].([]any) {
		issueIDs = append(issueIDs, id.(string))
	}
	sort.Strings(issueIDs)
	if !reflect.DeepEqual(testIDs, issueIDs) {
		t.Fatalf("db_config has `test` databases %v, the issue names %v", testIDs, issueIDs)
	}

	// While the collision is open, `test` is ambiguous (transcripts/step4_ambiguous_queries.txt).
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	if _, err := harness.Query(ctx, ss1, r.DB("test").TableList()); err == nil ||
		!strings.Contains(err.Error(), "Database `test` is ambiguous; there are multiple databases with that name.") {
		t.Errorf("r.db('test').tableList() during the collision: error %v, want the ambiguity error", err)
	}
	dbs, err := harness.Query(ctx, ss1, r.DBList())
	if err != nil {
		t.Fatal(err)
	}
	if n := count(dbs, "test"); n != 1 {
		t.Errorf("r.dbList() lists `test` %d times (%v), want once", n, dbs)
	}

	// The blog's fix.
	res := runWrite(t, ss1, blogFix())
	if res.Replaced != 2 || res.Errors != 0 {
		t.Fatalf("the blog's query: %+v, want replaced 2", res)
	}
	harness.Eventually(t, mergeTimeout, func() (bool, string) {
		for via, s := range all {
			issues, err := systemTable(t, s, "current_issues")
			if err != nil {
				return false, fmt.Sprintf("current_issues via %s: %v", via, err)
			}
			if len(issues) != 0 {
				return false, fmt.Sprintf("current_issues via %s after the fix: %v", via, issues)
			}
		}
		return true, ""
	})
	names := dbIDsByName(t, ss2)
	for _, id := range testIDs {
		want := "test_" + strings.Split(id, "-")[0]
		if got := names[want]; len(got) != 1 || got[0] != id {
			t.Errorf("after the fix, db_config has %s = %v, want [%s] (all: %v)", want, got, id, names)
		}
	}
	if _, ok := names["test"]; ok {
		t.Errorf("a database is still named test: %v", names)
	}

	// The proxy goes; the servers stay a full mesh.
	if !p.Stop() {
		t.Errorf("the proxy did not exit within %v of SIGTERM", harness.StopTimeout)
	}
	servers := map[string]*r.Session{"server_1": ss1, "server_2": ss2, "server_3": ss3}
	meshed := func() (bool, string) {
		for via, s := range servers {
			for _, name := range []string{"server_1", "server_2", "server_3"} {
				got, err := connectedTo(t, s, name)
				if err != nil {
					return false, fmt.Sprintf("via %s: %v", via, err)
				}
				want := others(name)
				if !reflect.DeepEqual(got, want) {
					return false, fmt.Sprintf("via %s, %s is connected to %v, want %v", via, name, got, want)
				}
			}
		}
		return true, ""
	}
	harness.Eventually(t, mergeTimeout, meshed)
	harness.Consistently(t, 5*time.Second, meshed)
}

func others(name string) []string {
	var out []string
	for _, n := range []string{"server_1", "server_2", "server_3"} {
		if n != name {
			out = append(out, n)
		}
	}
	return out
}

func count(list []any, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}
