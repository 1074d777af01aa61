package node

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

func TestCreateOnlyHasNoTestDatabase(t *testing.T) {
	d := dir(t, "created")
	if err := Run(context.Background(), Config{Directory: d, CreateOnly: true, ServerName: "made"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, metaFile)); err != nil {
		t.Fatal(err)
	}
	s := startReady(t, serverCfg(t, d, ""))
	if dbs, _ := s.Backend().DBs(context.Background()); len(dbs) != 0 {
		t.Errorf("created directory has databases: %v", dbs)
	}
	if names := s.serverNames(); len(names) != 1 || names[0] != "made" {
		t.Errorf("names: %v", names)
	}
}

func TestGeneratedNameAndTags(t *testing.T) {
	cfg := serverCfg(t, dir(t, "g"), "")
	cfg.Tags = []string{"blue", "default"}
	s := startReady(t, cfg)
	row := s.rows("server_config")[0]
	if name := row["name"].(string); !validServerName(name) || name == "" {
		t.Errorf("generated name %q", name)
	}
	if tags := row["tags"].([]any); len(tags) != 2 || tags[0] != "default" || tags[1] != "blue" {
		t.Errorf("tags %v", tags)
	}
}

func TestProxyTableAndUUIDFormat(t *testing.T) {
	ctx := context.Background()
	s1 := startReady(t, serverCfg(t, dir(t, "s1"), "server_1"))
	s2 := startReady(t, serverCfg(t, dir(t, "s2"), "server_2", s1))
	p := startReady(t, proxyCfg(s2))
	meshed(t, s1, s2, p)
	until(t, "test db on proxy", func() bool { dbs, _ := p.Backend().DBs(ctx); return len(dbs) == 1 }, p)

	row, err := p.Backend().TableCreate(ctx, "test", "via_proxy", reql.TableCreateOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if pr := row["shards"].([]any)[0].(map[string]any)["primary_replica"]; pr != "server_1" {
		t.Errorf("proxy placed the table on %v, want server_1", pr)
	}
	tb, _ := p.Backend().Table(ctx, "test", "via_proxy", reql.TableOpts{})
	s, err := tb.Insert(ctx, []map[string]any{{"id": 100.0, "via": "proxy"}}, "error")
	mustOK(t, s, err)
	s, err = tb.Modify(ctx, 100.0, update(map[string]any{"n": 1.0}))
	mustOK(t, s, err)
	if s.Replaced != 1 {
		t.Errorf("modify: %+v", s)
	}
	doc, err := tb.Get(ctx, 100.0)
	if err != nil || doc.(map[string]any)["n"] != 1.0 {
		t.Errorf("get: %v %v", doc, err)
	}

	tc, _ := p.Backend().Table(ctx, "rethinkdb", "table_config", reql.TableOpts{IdentifierFormat: "uuid"})
	rows, _ := tc.Scan(ctx)
	r := rows[0].(map[string]any)
	dbs, _ := p.Backend().DBs(ctx)
	if r["db"] != dbs[0].ID || r["shards"].([]any)[0].(map[string]any)["primary_replica"] != s1.ID() {
		t.Errorf("uuid format row: %v", r)
	}
	// A proxy is never a server_config/server_status row.
	for _, x := range p.rows("server_status") {
		if x["id"] == p.ID() {
			t.Error("the proxy has a server_status row")
		}
	}
	// Writes refused on read-only system tables.
	st, _ := p.Backend().Table(ctx, "rethinkdb", "current_issues", reql.TableOpts{})
	ws, err := st.Insert(ctx, []map[string]any{{"id": newUUID()}}, "error")
	if err != nil || ws.FirstError != "It's illegal to write to the `rethinkdb.current_issues` table." {
		t.Errorf("current_issues insert: %+v %v", ws, err)
	}
	dc, _ := p.Backend().Table(ctx, "rethinkdb", "db_config", reql.TableOpts{})
	ws, err = dc.Modify(ctx, dbs[0].ID, update(map[string]any{"name": "x y"}))
	want := "The change you're trying to make to `rethinkdb.db_config` has the wrong format. In `name`: \"x y\" is not a valid db name; Use A-Z, a-z, 0-9, _ and - only"
	if err != nil || ws.FirstError != want {
		t.Errorf("bad db name: %+v %v", ws, err)
	}
}
