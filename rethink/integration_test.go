package rethink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	r "gopkg.in/rethinkdb/rethinkdb-go.v6"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// exec runs an ad-hoc query through the client's session.
func execQ(t *testing.T, c *Client, q r.Term) {
	t.Helper()
	if _, err := q.RunWrite(c.session); err != nil {
		t.Fatalf("%v: %v", q, err)
	}
}

func TestSimSelfAndView(t *testing.T) {
	h := newCluster(t)
	s := h.StartServer(harness.ServerOptions{Name: "alpha"})
	c := dialSim(t, s)
	ctx := testCtx(t)

	self, err := c.Self(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if self.Name != "alpha" || self.ID != s.ID || self.ClusterPort != s.ClusterPort || self.DriverPort != s.DriverPort {
		t.Errorf("Self = %+v, sim id %s ports %d/%d", self, s.ID, s.ClusterPort, s.DriverPort)
	}
	if self.TimeStarted.IsZero() || len(self.CanonicalAddresses) == 0 || !slices.Equal(self.Tags, []string{"default"}) {
		t.Errorf("Self = %+v", self)
	}

	execQ(t, c, r.DB("test").TableCreate("t1"))
	v, err := c.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.Self.ID != s.ID || len(v.Servers) != 1 || len(v.Issues) != 0 || len(v.Proxies) != 0 {
		t.Errorf("View = %+v", v)
	}
	if len(v.DBs) != 1 || v.DBs[0].Name != "test" {
		t.Errorf("DBs = %+v", v.DBs)
	}
	if len(v.Tables) != 1 || v.Tables[0].Name != "t1" || v.Tables[0].DBName != "test" || v.Tables[0].DBID != v.DBs[0].ID {
		t.Errorf("Tables = %+v", v.Tables)
	}
}

func TestSimConditionalWrites(t *testing.T) {
	h := newCluster(t)
	s := h.StartServer(harness.ServerOptions{Name: "alpha"})
	c := dialSim(t, s)
	ctx := testCtx(t)
	execQ(t, c, r.DBCreate("app"))
	execQ(t, c, r.DBCreate("spare"))
	execQ(t, c, r.DB("test").TableCreate("t1"))

	v, err := c.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, d := range v.DBs {
		ids[d.Name] = d.ID
	}
	tableID := v.Tables[0].ID

	steps := []struct {
		name    string
		do      func() (bool, error)
		changed bool
		wantErr bool
	}{
		{"rename db, stale from", func() (bool, error) { return c.RenameDB(ctx, ids["test"], "nope", "test_x") }, false, false},
		{"rename db", func() (bool, error) { return c.RenameDB(ctx, ids["test"], "test", "test_x") }, true, false},
		{"rename db again", func() (bool, error) { return c.RenameDB(ctx, ids["test"], "test", "test_x") }, false, false},
		{"rename missing db", func() (bool, error) { return c.RenameDB(ctx, "00000000-0000-0000-0000-000000000000", "a", "b") }, false, false},
		{"rename db bad name", func() (bool, error) { return c.RenameDB(ctx, ids["app"], "app", "x y") }, false, true},
		{"rename table", func() (bool, error) { return c.RenameTable(ctx, tableID, "t1", "t2") }, true, false},
		{"rename table stale", func() (bool, error) { return c.RenameTable(ctx, tableID, "t1", "t3") }, false, false},
		{"move table", func() (bool, error) { return c.MoveTable(ctx, tableID, ids["test"], ids["app"]) }, true, false},
		{"move table stale", func() (bool, error) { return c.MoveTable(ctx, tableID, ids["test"], ids["app"]) }, false, false},
		{"move table to missing db", func() (bool, error) {
			return c.MoveTable(ctx, tableID, ids["app"], "00000000-0000-0000-0000-000000000000")
		}, false, true},
		{"drop non-empty db", func() (bool, error) { return c.DropDBIfEmpty(ctx, ids["app"], "app") }, false, false},
		{"drop empty db, stale name", func() (bool, error) { return c.DropDBIfEmpty(ctx, ids["spare"], "other") }, false, false},
		{"drop the only db of a name as a duplicate", func() (bool, error) { return c.DropDuplicateDBIfEmpty(ctx, ids["spare"], "spare") }, false, false},
		{"drop empty db", func() (bool, error) { return c.DropDBIfEmpty(ctx, ids["spare"], "spare") }, true, false},
		{"drop it again", func() (bool, error) { return c.DropDBIfEmpty(ctx, ids["spare"], "spare") }, false, false},
		{"rename server stale", func() (bool, error) { return c.RenameServer(ctx, s.ID, "beta", "gamma") }, false, false},
		{"rename server", func() (bool, error) { return c.RenameServer(ctx, s.ID, "alpha", "beta") }, true, false},
	}
	for _, st := range steps {
		changed, err := st.do()
		if (err != nil) != st.wantErr || changed != st.changed {
			t.Errorf("%s: changed=%v err=%v; want changed=%v, error=%v", st.name, changed, err, st.changed, st.wantErr)
		}
	}

	v, err = c.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tb := range v.Tables {
		got = append(got, tb.DBName+"."+tb.Name)
	}
	var dbs []string
	for _, d := range v.DBs {
		dbs = append(dbs, d.Name)
	}
	if !slices.Equal(got, []string{"app.t2"}) || !slices.Equal(dbs, []string{"app", "test_x"}) || v.Self.Name != "beta" {
		t.Errorf("after writes: tables %v dbs %v self %s", got, dbs, v.Self.Name)
	}
}

// Two agents renaming the same db from the same view. RethinkDB evaluates
// the update function between a read and a write of the system table that
// other queries can interleave with (artificial_table_t), so a CAS is not a
// lock: both may report a change. What the agent relies on is that racing
// agents pick the same deterministic target, so the end state is the same.
func TestSimRenameRace(t *testing.T) {
	h := newCluster(t)
	s := h.StartServer(harness.ServerOptions{Name: "alpha"})
	c1, c2 := dialSim(t, s), dialSim(t, s)
	ctx := testCtx(t)
	v, err := c1.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := v.DBs[0].ID
	from := "test"
	for i := range 10 {
		to := fmt.Sprintf("test_%d", i)
		type res struct {
			changed bool
			err     error
		}
		ch := make(chan res, 2)
		for _, c := range []*Client{c1, c2} {
			go func() { changed, err := c.RenameDB(ctx, id, from, to); ch <- res{changed, err} }()
		}
		a, b := <-ch, <-ch
		if a.err != nil || b.err != nil || !a.changed && !b.changed {
			t.Fatalf("round %d: %+v %+v", i, a, b)
		}
		v, err := c1.View(ctx)
		if err != nil || len(v.DBs) != 1 || v.DBs[0].Name != to {
			t.Fatalf("round %d: dbs %+v %v", i, v.DBs, err)
		}
		from = to
	}
}

func TestSimMergeThroughProxy(t *testing.T) {
	h := newCluster(t)
	a := h.StartServer(harness.ServerOptions{Name: "server_1"})
	b := h.StartServer(harness.ServerOptions{Name: "server_3"})
	ca, cb := dialSim(t, a), dialSim(t, b)
	ctx := testCtx(t)

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	notes := ca.Watch(watchCtx)
	select {
	case <-notes:
	case <-time.After(10 * time.Second):
		t.Fatal("no initial notification")
	}

	p := h.StartProxy(a, b)
	v := waitView(ctx, t, ca, 15*time.Second, func(v View) (bool, string) {
		return len(v.Servers) == 2 && len(v.Issues) == 1, fmt.Sprintf("%+v", v)
	})
	if !slices.Contains(v.Proxies, p.ID) {
		t.Errorf("Proxies = %v, want %s", v.Proxies, p.ID)
	}
	is := v.Issues[0]
	if is.Type != IssueDBNameCollision || is.Name != "test" || len(is.IDs) != 2 {
		t.Errorf("issue = %+v", is)
	}
	// The watcher saw the change.
	select {
	case <-notes:
	case <-time.After(10 * time.Second):
		t.Error("no notification after the merge")
	}

	// Through the proxy's driver port, Self refuses.
	cp := dialSim(t, p.Node)
	if _, err := cp.Self(ctx); !errors.Is(err, ErrProxy) {
		t.Errorf("Self via proxy: %v", err)
	}
	if _, err := cp.View(ctx); !errors.Is(err, ErrProxy) {
		t.Errorf("View via proxy: %v", err)
	}

	// An empty duplicate can go, but never the last database of its name.
	if changed, err := cb.DropDuplicateDBIfEmpty(ctx, is.IDs[0], "test"); err != nil || !changed {
		t.Fatalf("drop the first duplicate test: %v %v", changed, err)
	}
	waitView(ctx, t, ca, 15*time.Second, func(v View) (bool, string) {
		return len(v.DBs) == 1, fmt.Sprintf("%+v", v.DBs)
	})
	if changed, err := ca.DropDuplicateDBIfEmpty(ctx, is.IDs[1], "test"); err != nil || changed {
		t.Fatalf("drop the last test: %v %v, want unchanged", changed, err)
	}
	is.IDs = is.IDs[1:]

	// Resolve as the blog does, from the other side, and see it from ours.
	for _, id := range is.IDs {
		if _, err := cb.RenameDB(ctx, id, "test", "test_"+id[:8]); err != nil {
			t.Fatal(err)
		}
	}
	waitView(ctx, t, ca, 10*time.Second, func(v View) (bool, string) {
		return len(v.Issues) == 0, fmt.Sprintf("%+v", v.Issues)
	})

	stopWatch()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-notes:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("Watch channel not closed after ctx end")
		}
	}
}

func TestSimWrongPassword(t *testing.T) {
	h := newCluster(t)
	s := h.StartServer(harness.ServerOptions{Name: "alpha"})
	c := dialSim(t, s)
	ctx := testCtx(t)
	// Give admin a password, then dial with a wrong one.
	execQ(t, c, r.DB("rethinkdb").Table("users").Get("admin").Update(map[string]any{"password": "right-secret"}))
	_, err := Dial(ctx, Options{Address: s.DriverAddr(), Password: "wrong-secret", Timeout: 5 * time.Second})
	var authErr r.RQLAuthError
	if !errors.As(err, &authErr) {
		t.Fatalf("dial with a wrong password: %T %v", err, err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("error leaks the password: %v", err)
	}
	c2, err := Dial(ctx, Options{Address: s.DriverAddr(), Password: "right-secret", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
}

func TestSimWatchPollsWhenServerGone(t *testing.T) {
	h := newCluster(t)
	s := h.StartServer(harness.ServerOptions{Name: "alpha"})
	c, err := Dial(testCtx(t), Options{Address: s.DriverAddr(), Timeout: time.Second, PollInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notes := c.Watch(ctx)
	<-notes
	s.Stop()
	// With the server gone the feeds fail and the watcher keeps notifying.
	for i := range 3 {
		select {
		case <-notes:
		case <-time.After(10 * time.Second):
			t.Fatalf("notification %d missing while the server is down", i)
		}
	}
	cancel()
	for range notes {
	}
}

// Two servers with the same name, bridged: server_name_collision, the
// __conflict__ key in connected_to, and RenameServer fixes it.
func TestSimServerNameCollision(t *testing.T) {
	h := newCluster(t)
	a := h.StartServer(harness.ServerOptions{Name: "server_1"})
	b := h.StartServer(harness.ServerOptions{Name: "server_1"})
	ca := dialSim(t, a)
	ctx := testCtx(t)
	h.StartProxy(a, b)
	v := waitView(ctx, t, ca, 15*time.Second, func(v View) (bool, string) {
		for _, is := range v.Issues {
			if is.Type == IssueServerNameCollision {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", v.Issues)
	})
	var is Issue
	for _, i := range v.Issues {
		if i.Type == IssueServerNameCollision {
			is = i
		}
	}
	if is.Name != "server_1" || !slices.Contains(is.IDs, a.ID) || !slices.Contains(is.IDs, b.ID) {
		t.Errorf("issue = %+v", is)
	}
	if changed, err := ca.RenameServer(ctx, b.ID, "server_1", "server_1b"); err != nil || !changed {
		t.Fatalf("RenameServer: %v %v", changed, err)
	}
	waitView(ctx, t, ca, 10*time.Second, func(v View) (bool, string) {
		s, ok := v.Server(b.ID)
		for _, is := range v.Issues {
			if is.Type == IssueServerNameCollision {
				return false, fmt.Sprintf("still %+v", is)
			}
		}
		return ok && s.Name == "server_1b", fmt.Sprintf("%+v", s)
	})
}
