package agent

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// ActionKind is one kind of change the agent makes to a cluster.
type ActionKind string

// The changes the agent makes. There is no kind that deletes a table, and
// ActionDropDB only ever deletes a database that holds no table.
const (
	ActionRenameDB    ActionKind = "rename_db"
	ActionDropEmptyDB ActionKind = "drop_empty_db"
	// ActionDropDuplicateDB drops an empty database only while another one
	// still has its name.
	ActionDropDuplicateDB ActionKind = "drop_empty_duplicate_db"
	ActionMoveTable       ActionKind = "move_table"
	ActionRenameTable     ActionKind = "rename_table"
	ActionRenameServer    ActionKind = "rename_server"
)

// Action is one planned change, addressed by UUID. From is the value the
// object must still have for the change to apply (a name, or for
// ActionMoveTable the database name); To is the new value. For
// ActionMoveTable the write compares and sets the databases' ids, FromID and
// ToID; From and To name them for the logs.
type Action struct {
	Kind   ActionKind
	ID     string
	From   string
	To     string
	FromID string
	ToID   string
	Issue  string // the current_issues type that caused it
	Reason string
}

func (a Action) String() string {
	switch a.Kind {
	case ActionDropEmptyDB, ActionDropDuplicateDB:
		return fmt.Sprintf("%s %s (%s): %s", a.Kind, a.From, a.ID, a.Reason)
	case ActionMoveTable:
		return fmt.Sprintf("%s %s from db %s to db %s: %s", a.Kind, a.ID, a.From, a.To, a.Reason)
	}
	return fmt.Sprintf("%s %s (%s) -> %s: %s", a.Kind, a.From, a.ID, a.To, a.Reason)
}

// Origin is what the bridging agent knew before a merge: the servers and
// databases of its own side. It tells the sides apart afterwards. Planning
// works without it (nil), with weaker tie-breaks.
type Origin struct {
	Servers map[string]bool
	DBs     map[string]bool
	Tables  map[string]bool
}

// originOf snapshots a view before a merge.
func originOf(v rethink.View) *Origin {
	o := &Origin{Servers: map[string]bool{}, DBs: map[string]bool{}, Tables: map[string]bool{}}
	for _, s := range v.Servers {
		o.Servers[s.ID] = true
	}
	for _, d := range v.DBs {
		o.DBs[d.ID] = true
	}
	for _, t := range v.Tables {
		o.Tables[t.ID] = true
	}
	return o
}

// sideSize is the number of servers of the pre-merge cluster that an object
// came from: the local side, or everything else. 0 when unknown.
func (o *Origin) sideSize(local bool, total int) int {
	if o == nil {
		return 0
	}
	if local {
		return len(o.Servers)
	}
	return total - len(o.Servers)
}

// Plan computes the changes that resolve the name collisions of v under the
// policy. It is pure: the same view gives the same plan in every agent, which
// keeps racing agents from making different choices. PolicyReport plans as
// PolicySafe; the caller does not apply it.
func Plan(policy Policy, v rethink.View, origin *Origin) []Action {
	p := planner{policy: policy, v: v, origin: origin, byDB: map[string][]rethink.Table{},
		dbNames: map[string]bool{}, serverNames: map[string]bool{}, tableNames: map[string]bool{}}
	for _, d := range v.DBs {
		p.dbNames[d.Name] = true
	}
	for _, s := range v.Servers {
		p.serverNames[s.Name] = true
	}
	for _, t := range v.Tables {
		p.tableNames[t.DBID+"."+t.Name] = true
		p.byDB[t.DBID] = append(p.byDB[t.DBID], t)
	}
	issues := slices.Clone(v.Issues)
	slices.SortFunc(issues, func(a, b rethink.Issue) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	var out []Action
	for _, is := range issues {
		if len(is.IDs) < 2 {
			continue
		}
		switch is.Type {
		case rethink.IssueDBNameCollision:
			out = append(out, p.dbCollision(is)...)
		case rethink.IssueTableNameCollision:
			out = append(out, p.tableCollision(is)...)
		case rethink.IssueServerNameCollision:
			out = append(out, p.serverCollision(is)...)
		}
	}
	return out
}

type planner struct {
	policy      Policy
	v           rethink.View
	origin      *Origin
	byDB        map[string][]rethink.Table // the view's tables by database id
	dbNames     map[string]bool            // names in use, including the ones planned
	serverNames map[string]bool
	tableNames  map[string]bool // dbID + "." + name
}

// newName is name_<first block of the uuid>, or, in the unlikely case that it
// is taken, name_<whole uuid>. Server names allow only [A-Za-z0-9_].
func newName(name, id string, taken map[string]bool, server bool) string {
	block, _, _ := strings.Cut(id, "-")
	cand := name + "_" + block
	if taken[cand] {
		cand = name + "_" + id
	}
	if server {
		cand = strings.ReplaceAll(cand, "-", "_")
	}
	taken[cand] = true
	return cand
}

func (p *planner) tablesOf(dbID string) []rethink.Table { return p.byDB[dbID] }

// dbRank orders databases so that the one that keeps the name comes first:
// the larger side, then the one with more tables, then the smaller uuid (the
// sim and RethinkDB record no creation time, so "older" cannot be known).
func (p *planner) dbRank(a, b string) int {
	total := len(p.v.Servers)
	sa := p.origin.sideSize(p.origin != nil && p.origin.DBs[a], total)
	sb := p.origin.sideSize(p.origin != nil && p.origin.DBs[b], total)
	return cmp.Or(cmp.Compare(sb, sa), cmp.Compare(len(p.tablesOf(b)), len(p.tablesOf(a))), cmp.Compare(a, b))
}

func (p *planner) dbCollision(is rethink.Issue) []Action {
	ids := slices.Clone(is.IDs)
	slices.SortFunc(ids, p.dbRank)
	rename := func(id, why string) Action {
		return Action{Kind: ActionRenameDB, ID: id, From: is.Name, To: newName(is.Name, id, p.dbNames, false),
			Issue: is.Type, Reason: why}
	}
	if p.policy == PolicyRenameAll {
		var out []Action
		for _, id := range ids {
			out = append(out, rename(id, "rename-all: every colliding database is renamed"))
		}
		return out
	}
	var empty, full []string
	for _, id := range ids {
		if len(p.tablesOf(id)) == 0 {
			empty = append(empty, id)
		} else {
			full = append(full, id)
		}
	}
	// When every duplicate is empty, which one stays does not matter, so
	// the choice ignores the origin (only the bridging agent has one): every
	// agent keeps the smallest uuid, and racing agents drop the same ones.
	keep := slices.Min(ids)
	if len(full) > 0 {
		keep = full[0]
	}
	var out []Action
	for _, id := range empty {
		if id != keep {
			out = append(out, Action{Kind: ActionDropDuplicateDB, ID: id, From: is.Name, Issue: is.Type,
				Reason: fmt.Sprintf("duplicate database %q holds no table; %s keeps the name", is.Name, keep)})
		}
	}
	for _, id := range full {
		if id == keep {
			continue
		}
		r := rename(id, fmt.Sprintf("duplicate database %q holds tables; %s keeps the name", is.Name, keep))
		out = append(out, r)
		if p.policy == PolicyMerge {
			out = append(out, p.merge(keep, is.Name, id, r.To)...)
		}
	}
	return out
}

// merge moves the tables of database from (already renamed to fromName) into
// keep, when no table name clashes, and then drops the emptied database.
// Renaming first means every step addresses an unambiguous name.
func (p *planner) merge(keep, keepName, from, fromName string) []Action {
	moving := p.tablesOf(from)
	for _, t := range moving {
		if p.tableNames[keep+"."+t.Name] || t.Error != "" {
			return nil // a clash or an unreachable table: stay with the rename
		}
	}
	var out []Action
	for _, t := range moving {
		p.tableNames[keep+"."+t.Name] = true
		out = append(out, Action{Kind: ActionMoveTable, ID: t.ID, From: fromName, To: keepName, FromID: from, ToID: keep,
			Issue: rethink.IssueDBNameCollision, Reason: fmt.Sprintf("merge: table %q joins database %q", t.Name, keepName)})
	}
	return append(out, Action{Kind: ActionDropEmptyDB, ID: from, From: fromName, Issue: rethink.IssueDBNameCollision,
		Reason: fmt.Sprintf("merge: its tables moved to %q", keepName)})
}

func (p *planner) tableCollision(is rethink.Issue) []Action {
	ids := slices.Clone(is.IDs)
	total := len(p.v.Servers)
	slices.SortFunc(ids, func(a, b string) int {
		sa := p.origin.sideSize(p.origin != nil && p.origin.Tables[a], total)
		sb := p.origin.sideSize(p.origin != nil && p.origin.Tables[b], total)
		return cmp.Or(cmp.Compare(sb, sa), cmp.Compare(a, b))
	})
	dbID := ""
	for _, t := range p.v.Tables {
		if t.ID == ids[0] {
			dbID = t.DBID
		}
	}
	taken := map[string]bool{}
	for k := range p.tableNames {
		if db, name, ok := strings.Cut(k, "."); ok && db == dbID {
			taken[name] = true
		}
	}
	var out []Action
	for i, id := range ids {
		if i == 0 && p.policy != PolicyRenameAll {
			continue
		}
		to := newName(is.Name, id, taken, false)
		p.tableNames[dbID+"."+to] = true
		out = append(out, Action{Kind: ActionRenameTable, ID: id, From: is.Name, To: to, Issue: is.Type,
			Reason: fmt.Sprintf("duplicate table %q in database %q", is.Name, is.DB)})
	}
	return out
}

// serverCollision keeps the name on the server that has run longest and
// renames the newcomers.
func (p *planner) serverCollision(is rethink.Issue) []Action {
	ids := slices.Clone(is.IDs)
	started := map[string]int64{}
	for _, s := range p.v.Servers {
		started[s.ID] = s.TimeStarted.UnixNano()
	}
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Or(cmp.Compare(started[a], started[b]), cmp.Compare(a, b))
	})
	var out []Action
	for i, id := range ids {
		if i == 0 && p.policy != PolicyRenameAll {
			continue
		}
		out = append(out, Action{Kind: ActionRenameServer, ID: id, From: is.Name,
			To: newName(is.Name, id, p.serverNames, true), Issue: is.Type,
			Reason: fmt.Sprintf("duplicate server name %q; %s has run longest and keeps it", is.Name, ids[0])})
	}
	return out
}
