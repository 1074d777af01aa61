package rethink

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const recordings = "../e2e/testdata/rethinkdb-2.4.4/system-tables"

func loadRows(t *testing.T, name string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recordings, name))
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rows
}

// uuidTableConfig turns a recorded table_config (identifier_format "name")
// into what identifier_format "uuid" returns, using the recorded db_config.
func uuidTableConfig(tables, dbs []map[string]any) []map[string]any {
	ids := map[string]string{}
	for _, d := range dbs {
		ids[d["name"].(string)] = d["id"].(string)
	}
	out := make([]map[string]any, len(tables))
	for i, t := range tables {
		c := map[string]any{}
		for k, v := range t {
			c[k] = v
		}
		if id, ok := ids[t["db"].(string)]; ok {
			c["db"] = id
		}
		out[i] = c
	}
	return out
}

func loadView(t *testing.T, prefix, selfName string) View {
	t.Helper()
	dbs := loadRows(t, prefix+"_db_config.json")
	rows := Rows{
		ServerStatus:  loadRows(t, prefix+"_server_status.json"),
		ServerConfig:  loadRows(t, prefix+"_server_config.json"),
		CurrentIssues: loadRows(t, prefix+"_current_issues.json"),
		DBConfig:      dbs,
		TableConfig:   uuidTableConfig(loadRows(t, prefix+"_table_config.json"), dbs),
	}
	selfID := ""
	for _, s := range rows.ServerStatus {
		if s["name"] == selfName {
			selfID = s["id"].(string)
		}
	}
	v, err := BuildView(selfID, rows)
	if err != nil {
		t.Fatalf("%s: %v", prefix, err)
	}
	return v
}

// Every recorded table decodes without error.
func TestDecodeAllRecordings(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(recordings, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recordings: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		rows := loadRows(t, name)
		var err error
		switch {
		case strings.HasSuffix(name, "_server_status.json"):
			_, err = DecodeServers(rows, nil)
		case strings.HasSuffix(name, "_server_config.json"):
			_, err = DecodeServers(nil, rows)
		case strings.HasSuffix(name, "_current_issues.json"):
			_, err = DecodeIssues(rows)
		case strings.HasSuffix(name, "_db_config.json"):
			_, err = DecodeDBs(rows)
		case strings.HasSuffix(name, "_table_config.json"):
			_, err = DecodeTables(rows, nil)
		default:
			t.Errorf("unexpected recording %s", name)
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestViewAfterProxy(t *testing.T) {
	v := loadView(t, "03_after_proxy_via_server_1", "server_1")
	if v.Self.Name != "server_1" || v.Self.ID != "b9c2f6f4-42ea-4b28-b91c-19f303e1124e" {
		t.Errorf("Self = %s %s", v.Self.Name, v.Self.ID)
	}
	want := Server{
		ID:       "b9c2f6f4-42ea-4b28-b91c-19f303e1124e",
		Name:     "server_1",
		Tags:     []string{"default"},
		Hostname: "vm",
		CanonicalAddresses: []Addr{
			{Host: "127.0.0.1", Port: 4000},
			{Host: "::1", Port: 4000},
		},
		ClusterPort: 4000,
		DriverPort:  6000,
		ConnectedTo: []string{"proxy-66d2e99c-0015-408e-8b4c-df0eef81f64e", "server_2", "server_3"},
		TimeStarted: time.UnixMilli(1795673830522).UTC(),
	}
	if !reflect.DeepEqual(v.Self, want) {
		t.Errorf("Self =\n%+v\nwant\n%+v", v.Self, want)
	}
	var names []string
	for _, s := range v.Servers {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"server_1", "server_2", "server_3"}) {
		t.Errorf("servers = %v", names)
	}
	if !slices.Equal(v.Proxies, []string{"proxy-66d2e99c-0015-408e-8b4c-df0eef81f64e"}) {
		t.Errorf("Proxies = %v", v.Proxies)
	}
	if len(v.Issues) != 2 {
		t.Fatalf("issues = %+v", v.Issues)
	}
	for _, is := range v.Issues {
		if is.Type != IssueDBNameCollision || !is.Critical || len(is.IDs) != 2 || is.Raw == nil {
			t.Errorf("issue = %+v", is)
		}
	}
	if v.Issues[0].Name != "app" && v.Issues[1].Name != "app" {
		t.Errorf("no issue for app: %+v", v.Issues)
	}
	if len(v.DBs) != 4 || v.DBs[0].Name != "app" || v.DBs[3].Name != "test" {
		t.Errorf("DBs = %+v", v.DBs)
	}
	if len(v.Tables) != 4 {
		t.Fatalf("Tables = %+v", v.Tables)
	}
	for _, tb := range v.Tables {
		if tb.DBName == "" || tb.DBID == "" || tb.Error != "" {
			t.Errorf("table = %+v", tb)
		}
	}
}

func TestViewPartition(t *testing.T) {
	v := loadView(t, "09_full_restart_s3_nojoin_via_server_1", "server_1")
	var unavailable []string
	for _, tb := range v.Tables {
		if tb.Error != "" {
			unavailable = append(unavailable, tb.DBName+"."+tb.Name)
		}
	}
	slices.Sort(unavailable)
	if !slices.Equal(unavailable, []string{"app_cfe3bed7.t3", "app_d452890f.items_t3"}) {
		t.Errorf("unavailable tables = %v", unavailable)
	}
	for _, is := range v.Issues {
		if is.Type != IssueTableAvailability || is.DB == "" || is.Name == "" {
			t.Errorf("issue = %+v", is)
		}
	}
	if len(v.Proxies) != 0 {
		t.Errorf("Proxies = %v", v.Proxies)
	}
}

func TestViewServerNameCollision(t *testing.T) {
	v := loadView(t, "11_server_name_collision_via_server_1", "server_1")
	if len(v.Issues) != 1 {
		t.Fatalf("issues = %+v", v.Issues)
	}
	is := v.Issues[0]
	if is.Type != IssueServerNameCollision || is.Name != "server_1" ||
		!slices.Equal(is.IDs, []string{"b9c2f6f4-42ea-4b28-b91c-19f303e1124e", "0892fd31-90c0-4986-9bbf-a8ee0a0ddd8b"}) {
		t.Errorf("issue = %+v", is)
	}
	s3, ok := v.Server("01c87574-ce6d-4611-8aaf-6286633dd822")
	if !ok || !slices.Contains(s3.ConnectedTo, "server_1__conflict__0892fd31_90c0_4986_9bbf_a8ee0a0ddd8b") {
		t.Errorf("server_3 connected_to = %v", s3.ConnectedTo)
	}
}

func TestBuildViewSelfMissing(t *testing.T) {
	dbs := loadRows(t, "03_after_proxy_via_proxy_6003_db_config.json")
	_, err := BuildView("proxy-66d2e99c-0015-408e-8b4c-df0eef81f64e", Rows{
		ServerStatus: loadRows(t, "03_after_proxy_via_proxy_6003_server_status.json"),
		DBConfig:     dbs,
	})
	if err == nil || !strings.Contains(err.Error(), "server_status") {
		t.Errorf("err = %v", err)
	}
}

// Native driver values (time.Time, int) decode like the raw JSON ones.
func TestDecodeNativeValues(t *testing.T) {
	ts := time.Date(2026, 11, 26, 6, 31, 6, 162e6, time.UTC)
	row := map[string]any{
		"id": "x", "name": "n",
		"network": map[string]any{
			"hostname": "h", "cluster_port": 1, "reql_port": int64(2),
			"canonical_addresses": []any{map[string]any{"host": "h", "port": json.Number("3")}},
			"connected_to":        map[string]any{},
		},
		"process": map[string]any{"time_started": ts},
	}
	s, err := DecodeServers([]map[string]any{row}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s[0].TimeStarted.Equal(ts) || s[0].DriverPort != 2 || s[0].CanonicalAddresses[0].Port != 3 {
		t.Errorf("got %+v", s[0])
	}
}

func TestDecodeErrors(t *testing.T) {
	good := func() map[string]any {
		return loadRows(t, "03_after_proxy_via_server_1_server_status.json")[0]
	}
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		want   string
	}{
		{"missing id", func(m map[string]any) { delete(m, "id") }, `"id": missing`},
		{"name not string", func(m map[string]any) { m["name"] = 3.0 }, `"name": got float64, want string`},
		{"network null", func(m map[string]any) { m["network"] = nil }, `"network.hostname"`},
		{"port fractional", func(m map[string]any) { m["network"].(map[string]any)["cluster_port"] = 1.5 }, `"network.cluster_port"`},
		{"connected_to array", func(m map[string]any) { m["network"].(map[string]any)["connected_to"] = []any{} }, `"network.connected_to": got []interface {}, want object`},
		{"address not object", func(m map[string]any) { m["network"].(map[string]any)["canonical_addresses"] = []any{"x"} }, `canonical_addresses[0]`},
		{"address port missing", func(m map[string]any) {
			m["network"].(map[string]any)["canonical_addresses"] = []any{map[string]any{"host": "h"}}
		}, `canonical_addresses[0].port`},
		{"bad time", func(m map[string]any) { m["process"].(map[string]any)["time_started"] = "yesterday" }, `"process.time_started"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := good()
			tc.mutate(m)
			_, err := DecodeServers([]map[string]any{m}, nil)
			if err == nil || !strings.Contains(err.Error(), "rethinkdb.server_status") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to name server_status and %s", err, tc.want)
			}
		})
	}

	other := []struct {
		name string
		run  func() error
		want string
	}{
		{"issue critical", func() error {
			_, err := DecodeIssues([]map[string]any{{"id": "i", "type": "t", "critical": "yes", "description": "d"}})
			return err
		}, `rethinkdb.current_issues row i: field "critical"`},
		{"issue ids", func() error {
			_, err := DecodeIssues([]map[string]any{{"id": "i", "type": "t", "critical": true, "description": "d", "info": map[string]any{"ids": []any{1.0}}}})
			return err
		}, `"info.ids[0]"`},
		{"db name", func() error { _, err := DecodeDBs([]map[string]any{{"id": "d"}}); return err }, `rethinkdb.db_config row d: field "name"`},
		{"table db", func() error { _, err := DecodeTables([]map[string]any{{"id": "t", "name": "n"}}, nil); return err }, `rethinkdb.table_config row t: field "db"`},
		{"tags", func() error {
			_, err := DecodeServers(nil, []map[string]any{{"id": "s", "tags": "default"}})
			return err
		}, `rethinkdb.server_config row s: field "tags"`},
	}
	for _, tc := range other {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %s", err, tc.want)
			}
		})
	}
}

// Replacing any field anywhere by a value of another type must give an
// error or a result, never a panic.
func TestDecodeNeverPanics(t *testing.T) {
	bad := []any{nil, 1.0, "s", true, []any{1.0}, map[string]any{}}
	var walk func(m map[string]any, visit func(set func(any)))
	walk = func(m map[string]any, visit func(set func(any))) {
		for k, v := range m {
			visit(func(x any) { m[k] = x })
			m[k] = v
			if sub, ok := v.(map[string]any); ok {
				walk(sub, visit)
			}
		}
	}
	for _, table := range []string{"server_status", "current_issues", "table_config"} {
		prefix := "09_full_restart_s3_nojoin_via_server_1_"
		if table == "current_issues" {
			prefix = "11_server_name_collision_via_server_1_"
		}
		rows := loadRows(t, prefix+table+".json")
		walk(rows[0], func(set func(any)) {
			for _, b := range bad {
				set(b)
				switch table {
				case "server_status":
					_, _ = DecodeServers(rows, nil)
				case "current_issues":
					_, _ = DecodeIssues(rows)
				default:
					_, _ = DecodeTables(rows, nil)
				}
			}
		})
	}
}

// A real 2.4.4 lists in connected_to every server the cluster knows of, with
// false for those this server is not connected to (server_status.cc,
// is_connected): while a proxy meshes a merged cluster a row can read
// {"server_2": true, "server_3": false}. Only the true ones are connections.
func TestDecodeConnectedToFalse(t *testing.T) {
	tests := []struct {
		name string
		conn map[string]any
		want []string
		err  string
	}{
		{"all true", map[string]any{"server_2": true, "server_3": true}, []string{"server_2", "server_3"}, ""},
		{"one false", map[string]any{"server_2": true, "server_3": false}, []string{"server_2"}, ""},
		{"proxy false", map[string]any{"proxy-66d2e99c-0015-408e-8b4c-df0eef81f64e": false, "server_2": true}, []string{"server_2"}, ""},
		{"all false", map[string]any{"server_2": false}, nil, ""},
		{"not a bool", map[string]any{"server_2": "yes"}, nil, `"network.connected_to.server_2": got string, want bool`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := loadRows(t, "03_after_proxy_via_server_1_server_status.json")[0]
			m["network"].(map[string]any)["connected_to"] = tc.conn
			s, err := DecodeServers([]map[string]any{m}, nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s[0].ConnectedTo, tc.want) {
				t.Errorf("ConnectedTo = %v, want %v", s[0].ConnectedTo, tc.want)
			}
		})
	}
}
