package agent

import (
	"slices"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

const (
	dbA   = "e0905b88-b119-41c1-85b0-5a768600ca66" // side A (2 servers)
	dbB   = "062a1ed3-bff3-4526-8206-45fed1af8699" // side B (1 server)
	appA  = "cfe3bed7-ba80-4113-9a88-1c4e1724148e"
	appB  = "d452890f-f452-4235-a9e0-9e368d9feda3"
	srv1  = "b9c2f6f4-42ea-4b28-b91c-19f303e1124e"
	srv2  = "0bc9767e-f7db-4757-9edf-9e64194dc452"
	srv3  = "01c87574-ce6d-4611-8aaf-6286633dd822"
	srv1b = "0892fd31-90c0-4986-9bbf-a8ee0a0ddd8b"
)

// blogView is the cluster of the recordings' phase 03: two `test` and two
// `app` databases, and tables as given.
func blogView(tables ...rethink.Table) rethink.View {
	return rethink.View{
		Servers: []rethink.Server{{ID: srv1, Name: "server_1"}, {ID: srv2, Name: "server_2"}, {ID: srv3, Name: "server_3"}},
		DBs:     []rethink.DB{{ID: appA, Name: "app"}, {ID: appB, Name: "app"}, {ID: dbA, Name: "test"}, {ID: dbB, Name: "test"}},
		Tables:  tables,
		Issues: []rethink.Issue{
			{Type: rethink.IssueDBNameCollision, Name: "app", IDs: []string{appA, appB}},
			{Type: rethink.IssueDBNameCollision, Name: "test", IDs: []string{dbB, dbA}},
		},
	}
}

var sideA = &Origin{Servers: map[string]bool{srv1: true, srv2: true}, DBs: map[string]bool{dbA: true, appA: true},
	Tables: map[string]bool{}}

func TestPlan(t *testing.T) {
	tbl := func(id, name, db string) rethink.Table { return rethink.Table{ID: id, Name: name, DBID: db} }
	withData := blogView(tbl("t1", "t1", dbA), tbl("t3", "t3", dbB), tbl("i1", "items_t1", appA), tbl("i3", "items_t3", appB))
	tests := []struct {
		name   string
		policy Policy
		view   rethink.View
		origin *Origin
		want   []Action
	}{
		{
			name: "fresh test dbs: the empty duplicates go, the smallest uuid stays whatever the origin", policy: PolicySafe,
			view: blogView(), origin: sideA,
			want: []Action{
				{Kind: ActionDropDuplicateDB, ID: appB, From: "app"},
				{Kind: ActionDropDuplicateDB, ID: dbA, From: "test"},
			},
		},
		{
			name: "data on both sides: the larger side keeps the names", policy: PolicySafe,
			view: withData, origin: sideA,
			want: []Action{
				{Kind: ActionRenameDB, ID: appB, From: "app", To: "app_d452890f"},
				{Kind: ActionRenameDB, ID: dbB, From: "test", To: "test_062a1ed3"},
			},
		},
		{
			name: "without an origin the tie-break is the smaller uuid", policy: PolicySafe,
			view: withData,
			want: []Action{
				{Kind: ActionRenameDB, ID: appB, From: "app", To: "app_d452890f"},
				{Kind: ActionRenameDB, ID: dbA, From: "test", To: "test_e0905b88"},
			},
		},
		{
			name: "an empty duplicate goes, the full one keeps the name even from the smaller side", policy: PolicySafe,
			view: blogView(tbl("t3", "t3", dbB)), origin: sideA,
			want: []Action{
				{Kind: ActionDropDuplicateDB, ID: appB, From: "app"},
				{Kind: ActionDropDuplicateDB, ID: dbA, From: "test"},
			},
		},
		{
			name: "merge moves tables that do not clash and drops the emptied duplicate", policy: PolicyMerge,
			view: withData, origin: sideA,
			want: []Action{
				{Kind: ActionRenameDB, ID: appB, From: "app", To: "app_d452890f"},
				{Kind: ActionMoveTable, ID: "i3", From: "app_d452890f", To: "app", FromID: appB, ToID: appA},
				{Kind: ActionDropEmptyDB, ID: appB, From: "app_d452890f"},
				{Kind: ActionRenameDB, ID: dbB, From: "test", To: "test_062a1ed3"},
				{Kind: ActionMoveTable, ID: "t3", From: "test_062a1ed3", To: "test", FromID: dbB, ToID: dbA},
				{Kind: ActionDropEmptyDB, ID: dbB, From: "test_062a1ed3"},
			},
		},
		{
			name: "merge falls back to a rename when table names clash", policy: PolicyMerge,
			view: blogView(tbl("x1", "items", appA), tbl("x3", "items", appB)), origin: sideA,
			want: []Action{
				{Kind: ActionRenameDB, ID: appB, From: "app", To: "app_d452890f"},
				{Kind: ActionDropDuplicateDB, ID: dbA, From: "test"},
			},
		},
		{
			name: "rename-all renames every colliding database, as the blog does", policy: PolicyRenameAll,
			view: blogView(),
			want: []Action{
				{Kind: ActionRenameDB, ID: appA, From: "app", To: "app_cfe3bed7"},
				{Kind: ActionRenameDB, ID: appB, From: "app", To: "app_d452890f"},
				{Kind: ActionRenameDB, ID: dbB, From: "test", To: "test_062a1ed3"},
				{Kind: ActionRenameDB, ID: dbA, From: "test", To: "test_e0905b88"},
			},
		},
		{
			name: "report plans like safe", policy: PolicyReport,
			view: blogView(), origin: sideA,
			want: []Action{
				{Kind: ActionDropDuplicateDB, ID: appB, From: "app"},
				{Kind: ActionDropDuplicateDB, ID: dbA, From: "test"},
			},
		},
		{
			name: "server newcomer is renamed", policy: PolicySafe,
			view: rethink.View{
				Servers: []rethink.Server{
					{ID: srv1, Name: "server_1", TimeStarted: time.Unix(100, 0)},
					{ID: srv1b, Name: "server_1", TimeStarted: time.Unix(200, 0)},
				},
				Issues: []rethink.Issue{{Type: rethink.IssueServerNameCollision, Name: "server_1", IDs: []string{srv1, srv1b}}},
			},
			want: []Action{{Kind: ActionRenameServer, ID: srv1b, From: "server_1", To: "server_1_0892fd31"}},
		},
		{
			name: "table collision renames all but the first", policy: PolicySafe,
			view: rethink.View{
				DBs:    []rethink.DB{{ID: appA, Name: "app"}},
				Tables: []rethink.Table{tbl("aaaa-1", "items", appA), tbl("bbbb-2", "items", appA)},
				Issues: []rethink.Issue{{Type: rethink.IssueTableNameCollision, Name: "items", DB: "app", IDs: []string{"bbbb-2", "aaaa-1"}}},
			},
			want: []Action{{Kind: ActionRenameTable, ID: "bbbb-2", From: "items", To: "items_bbbb"}},
		},
		{
			name: "a rename target that is taken gets the whole uuid", policy: PolicyRenameAll,
			view: rethink.View{
				DBs:    []rethink.DB{{ID: appA, Name: "app"}, {ID: appB, Name: "app"}, {ID: "zz", Name: "app_cfe3bed7"}},
				Issues: []rethink.Issue{{Type: rethink.IssueDBNameCollision, Name: "app", IDs: []string{appA, appB}}},
			},
			want: []Action{
				{Kind: ActionRenameDB, ID: appA, From: "app", To: "app_" + appA},
				{Kind: ActionRenameDB, ID: appB, From: "app", To: "app_d452890f"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.policy, tt.view, tt.origin)
			for i := range got {
				got[i].Reason, got[i].Issue = "", ""
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Plan:\n got  %v\n want %v", got, tt.want)
			}
		})
	}
}

// TestPlanNeverDropsTables checks the invariant on every policy: no action
// deletes a database that holds a table, and none deletes a table.
func TestPlanNeverDropsTables(t *testing.T) {
	tbl := func(id, name, db string) rethink.Table { return rethink.Table{ID: id, Name: name, DBID: db} }
	views := []rethink.View{
		blogView(),
		blogView(tbl("t1", "t1", dbA)),
		blogView(tbl("t1", "t1", dbA), tbl("t3", "t3", dbB), tbl("i3", "x", appB)),
		blogView(tbl("x1", "items", appA), tbl("x3", "items", appB)),
	}
	for _, policy := range []Policy{PolicySafe, PolicyMerge, PolicyRenameAll, PolicyReport} {
		for i, v := range views {
			in := map[string]string{} // table -> the db it is still in
			for _, tb := range v.Tables {
				in[tb.ID] = tb.DBID
			}
			for _, a := range Plan(policy, v, sideA) {
				if a.Kind == ActionMoveTable {
					delete(in, a.ID) // it left its database
				}
				if a.Kind == ActionDropEmptyDB || a.Kind == ActionDropDuplicateDB {
					for id, db := range in {
						if db == a.ID {
							t.Errorf("%s, view %d: %v drops a database that still holds table %s", policy, i, a, id)
						}
					}
				}
			}
		}
	}
}
