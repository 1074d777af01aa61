package e2e

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// queryTimeout bounds every single query of the scenarios.
const queryTimeout = 20 * time.Second

// mergeTimeout bounds how long a merge through a proxy may take to show.
// The recordings show 20-25 ms; this is for a loaded test machine.
const mergeTimeout = 30 * time.Second

func systemTable(t testing.TB, s *r.Session, table string) ([]map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	rows, err := harness.Query(ctx, s, r.DB("rethinkdb").Table(table))
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(rows))
	for _, row := range rows {
		m, ok := row.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("rethinkdb.%s: row %v is not an object", table, row)
		}
		out = append(out, m)
	}
	return out, nil
}

func mustSystemTable(t testing.TB, s *r.Session, table string) []map[string]any {
	t.Helper()
	rows, err := systemTable(t, s, table)
	if err != nil {
		t.Fatalf("read rethinkdb.%s: %v", table, err)
	}
	return rows
}

// serverNames lists the names in server_status, sorted.
func serverNames(t testing.TB, s *r.Session) ([]string, error) {
	rows, err := systemTable(t, s, "server_status")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, row := range rows {
		name, _ := row["name"].(string)
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// waitServers waits until every session sees exactly the named servers.
func waitServers(t testing.TB, timeout time.Duration, want []string, sessions map[string]*r.Session) {
	t.Helper()
	sort.Strings(want)
	harness.Eventually(t, timeout, func() (bool, string) {
		for via, s := range sessions {
			got, err := serverNames(t, s)
			if err != nil {
				return false, fmt.Sprintf("server_status via %s: %v", via, err)
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				return false, fmt.Sprintf("server_status via %s lists %v, want %v", via, got, want)
			}
		}
		return true, ""
	})
}

// connectedTo returns the keys of server_status.network.connected_to of
// the server named name, as seen through s.
func connectedTo(t testing.TB, s *r.Session, name string) ([]string, error) {
	rows, err := systemTable(t, s, "server_status")
	if err != nil {
		return nil, err
	}
	for _, row := range rows {
		if row["name"] != name {
			continue
		}
		network, _ := row["network"].(map[string]any)
		ct, ok := network["connected_to"].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("server_status of %s has no network.connected_to object: %v", name, row)
		}
		var keys []string
		for k, v := range ct {
			if v == true {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		return keys, nil
	}
	return nil, fmt.Errorf("server %s not in server_status", name)
}

// issuesOfType returns the current_issues of one type.
func issuesOfType(t testing.TB, s *r.Session, typ string) ([]map[string]any, error) {
	rows, err := systemTable(t, s, "current_issues")
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, row := range rows {
		if row["type"] == typ {
			out = append(out, row)
		}
	}
	return out, nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// checkDBNameCollision checks one db_name_collision issue against the
// recorded shape (system-tables/03_after_proxy_*_current_issues.json).
func checkDBNameCollision(issue map[string]any, name string) error {
	if issue["critical"] != true {
		return fmt.Errorf("critical is %v, want true", issue["critical"])
	}
	if id, _ := issue["id"].(string); !uuidRE.MatchString(id) {
		return fmt.Errorf("id %v is not a uuid", issue["id"])
	}
	info, ok := issue["info"].(map[string]any)
	if !ok {
		return fmt.Errorf("info is %T, want an object", issue["info"])
	}
	if info["name"] != name {
		return fmt.Errorf("info.name is %v, want %q", info["name"], name)
	}
	raw, ok := info["ids"].([]any)
	if !ok || len(raw) != 2 {
		return fmt.Errorf("info.ids is %v, want 2 uuids", info["ids"])
	}
	var ids []string
	for _, v := range raw {
		id, _ := v.(string)
		if !uuidRE.MatchString(id) {
			return fmt.Errorf("info.ids holds %v, not a uuid", v)
		}
		ids = append(ids, id)
	}
	want := "There are multiple databases named `" + name + "`. RethinkDB requires that every database have a unique name. " +
		"Please update the `name` field of the conflicting databases' documents in the `rethinkdb.db_config` system table.\n\n" +
		"The UUIDs of the conflicting databases are as follows: " + strings.Join(ids, ", ")
	if issue["description"] != want {
		return fmt.Errorf("description is\n%q\nwant\n%q", issue["description"], want)
	}
	return nil
}

// blogFix is the seed blog post's ReQL, translated to rethinkdb-go term by
// term: every database named in a db_name_collision is renamed to
// name_<first block of its uuid>.
//
//	r.db('rethinkdb').table('current_issues')
//	  .filter({ type: 'db_name_collision' })
//	  .concatMap(function (row) { return row('info')('ids'); })
//	  .forEach(function (id) {
//	    return r.db('rethinkdb').table('db_config').get(id)
//	      .update(function (issue) {
//	        return { 'name': issue('name').add('_').add(id.split('-')(0)) };
//	      });
//	  })
func blogFix() r.Term {
	return r.DB("rethinkdb").Table("current_issues").
		Filter(map[string]any{"type": "db_name_collision"}).
		ConcatMap(func(row r.Term) r.Term {
			return row.Field("info").Field("ids")
		}).
		ForEach(func(id r.Term) r.Term {
			return r.DB("rethinkdb").Table("db_config").Get(id).
				Update(func(issue r.Term) any {
					return map[string]any{
						"name": issue.Field("name").Add("_").Add(id.Split("-").Nth(0)),
					}
				})
		})
}

func runWrite(t testing.TB, s *r.Session, q r.Term) r.WriteResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	res, err := q.RunWrite(s, r.RunOpts{Context: ctx})
	if err != nil {
		t.Fatalf("%v: %v", q, err)
	}
	return res
}

// dbIDsByName maps db names to their ids, from db_config.
func dbIDsByName(t testing.TB, s *r.Session) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, row := range mustSystemTable(t, s, "db_config") {
		name, _ := row["name"].(string)
		id, _ := row["id"].(string)
		out[name] = append(out[name], id)
	}
	return out
}
