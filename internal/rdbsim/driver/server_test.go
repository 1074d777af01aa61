package driver_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/driver"
	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql/reqltest"
	"github.com/rethinkdb-agent/rethinkdb-agent/internal/testutil"
)

func TestMain(m *testing.M) {
	// rethinkdb-go leaks its host pool's decay goroutine when Connect fails
	// (wrong password tests); that is the client's, not the server's.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hailocab/go-hostpool.(*epsilonGreedyHostPool).epsilonGreedyDecay"))
}

type fixture struct {
	addr  string
	b     *reqltest.Backend
	table *reqltest.Table
}

// start serves a fake backend with test.items (ids 1..n) on 127.0.0.1:0.
func start(t testing.TB, password string, batch int, n int) *fixture {
	t.Helper()
	b := reqltest.New()
	dbs, _ := b.DBs(context.Background())
	docs := make([]map[string]any, 0, n)
	for i := 1; i <= n; i++ {
		docs = append(docs, map[string]any{"id": i, "n": i * 10})
	}
	tbl := b.AddTable(dbs[0].ID, "items", docs...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- driver.Serve(ctx, ln, driver.Config{Backend: b, Password: func() string { return password }, BatchSize: batch})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &fixture{addr: ln.Addr().String(), b: b, table: tbl}
}

func connect(t testing.TB, addr, user, password string) (*r.Session, error) {
	t.Helper()
	s, err := r.Connect(r.ConnectOpts{Address: addr, Username: user, Password: password, InitialCap: 1, MaxOpen: 1, Timeout: 5 * time.Second})
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func mustConnect(t testing.TB, addr string) *r.Session {
	t.Helper()
	s, err := connect(t, addr, "", "")
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return s
}

func TestHandshake(t *testing.T) {
	f := start(t, "s3cret", 0, 1)
	tests := []struct {
		name, user, password string
		wantErr              string
	}{
		{"right password", "admin", "s3cret", ""},
		{"default user", "", "s3cret", ""},
		{"wrong password", "admin", "nope", "rethinkdb: Wrong password"},
		{"no password", "", "", "rethinkdb: Wrong password"},
		{"unknown user", "bob", "s3cret", "rethinkdb: Unknown user"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := connect(t, f.addr, tc.user, tc.password)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				var n int
				if err := r.DB("test").Table("items").Count().ReadOne(&n, s); err != nil || n != 1 {
					t.Fatalf("count = %d, %v", n, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want %q", err, tc.wantErr)
			}
			var ae r.RQLAuthError
			if !errors.As(err, &ae) {
				t.Errorf("error type %T, want rethinkdb.RQLAuthError", err)
			}
		})
	}
}

func TestLegacyHandshake(t *testing.T) {
	f := start(t, "s3cret", 0, 1)
	for _, tc := range []struct {
		key     string
		wantErr string
	}{
		{"s3cret", ""},
		{"nope", `Server dropped connection with message: "ERROR: Incorrect authorization key."`},
	} {
		s, err := r.Connect(r.ConnectOpts{Address: f.addr, HandshakeVersion: r.HandshakeV0_4, AuthKey: tc.key, InitialCap: 1, MaxOpen: 1})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("key %q: got %v, want %q", tc.key, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("key %q: %v", tc.key, err)
		}
		var n int
		err = r.DB("test").Table("items").Count().ReadOne(&n, s)
		s.Close()
		if err != nil || n != 1 {
			t.Errorf("count over V0_4 = %d, %v", n, err)
		}
	}
}

func TestUnsupportedMagic(t *testing.T) {
	f := start(t, "", 0, 0)
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := "ERROR: Received an unsupported protocol version. This port is for RethinkDB queries. Does your client driver version not match the server?\n\x00"
	if string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestQueryErrors(t *testing.T) {
	f := start(t, "", 0, 3)
	s := mustConnect(t, f.addr)
	tests := []struct {
		name    string
		q       r.Term
		wantMsg string
		check   func(error) bool
	}{
		{"missing db", r.DB("nosuchdb").Table("t"), "rethinkdb: Database `nosuchdb` does not exist. in:\nr.DB(\"nosuchdb\").Table(\"t\")",
			func(err error) bool { var e r.RQLOpFailedError; return errors.As(err, &e) }},
		{"missing table", r.DB("test").Table("nosuch"), "rethinkdb: Table `test.nosuch` does not exist. in:\nr.DB(\"test\").Table(\"nosuch\")",
			func(err error) bool { var e r.RQLOpFailedError; return errors.As(err, &e) }},
		{"r.error", r.Do(1, func(x r.Term) r.Term { return r.Error("boom") }), "rethinkdb: boom in:\nr.Do(func(var_1 r.Term) r.Term { return r.Error(\"boom\") }, 1)",
			func(err error) bool { var e r.RQLUserError; return errors.As(err, &e) }},
		{"non-existence", r.Expr(map[string]any{"a": 1}).Field("x"), "rethinkdb: No attribute `x` in object:\n{\n\t\"a\":\t1\n} in:\nr.Expr(map[a:1]).Field(\"x\")",
			func(err error) bool { var e r.RQLNonExistenceError; return errors.As(err, &e) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.q.Run(s)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), strings.SplitN(tc.wantMsg, " in:", 2)[0]) {
				t.Errorf("got %q, want %q", err.Error(), tc.wantMsg)
			}
			if !tc.check(err) {
				t.Errorf("wrong error type %T", err)
			}
		})
	}
}

func TestReadsAndBatches(t *testing.T) {
	f := start(t, "", 2, 7) // two documents per batch: scans need CONTINUEs
	s := mustConnect(t, f.addr)

	var all []map[string]any
	cur, err := r.DB("test").Table("items").Run(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := cur.All(&all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 7 {
		t.Fatalf("got %d rows, want 7", len(all))
	}

	var doc map[string]any
	if err := r.DB("test").Table("items").Get(3).ReadOne(&doc, s); err != nil || doc["n"] != 30.0 {
		t.Fatalf("get = %v, %v", doc, err)
	}
	var ids []int
	if err := r.DB("test").Table("items").Filter(r.Row.Field("n").Gt(40)).Field("id").ReadAll(&ids, s); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids) != "[5 6 7]" {
		t.Errorf("filter ids = %v", ids)
	}
	var names []string
	if err := r.DBList().ReadAll(&names, s); err != nil || fmt.Sprint(names) != "[rethinkdb test]" {
		t.Errorf("dbList = %v, %v", names, err)
	}

	// Closing a cursor before the end sends STOP; the connection stays usable.
	cur, err = r.DB("test").Table("items").Run(s)
	if err != nil {
		t.Fatal(err)
	}
	var first map[string]any
	if !cur.Next(&first) {
		t.Fatalf("no first row: %v", cur.Err())
	}
	if err := cur.Close(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := r.DB("test").Table("items").Count().ReadOne(&n, s); err != nil || n != 7 {
		t.Errorf("count after close = %d, %v", n, err)
	}
}

func TestWritesAndNoreply(t *testing.T) {
	f := start(t, "", 0, 0)
	s := mustConnect(t, f.addr)
	res, err := r.DB("test").Table("items").Insert(map[string]any{"name": "x"}).RunWrite(s)
	if err != nil || res.Inserted != 1 || len(res.GeneratedKeys) != 1 {
		t.Fatalf("insert = %+v, %v", res, err)
	}
	if err := r.DB("test").Table("items").Insert(map[string]any{"id": "nr"}).Exec(s, r.ExecOpts{NoReply: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.NoReplyWait(); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := r.DB("test").Table("items").Get("nr").ReadOne(&doc, s); err != nil || doc["id"] != "nr" {
		t.Fatalf("noreply insert not visible: %v, %v", doc, err)
	}
	res, err = r.DB("rethinkdb").Table("db_config").Get("no-such-id").Delete().RunWrite(s)
	if err != nil || res.Skipped != 1 {
		t.Errorf("delete missing db_config row = %+v, %v", res, err)
	}
}

func TestServerInfo(t *testing.T) {
	f := start(t, "", 0, 0)
	f.b.SetServerInfo(map[string]any{"id": "e32b5a0f-1ad9-46a1-9225-4faeb22f8013", "name": "pw_1", "proxy": false})
	s := mustConnect(t, f.addr)
	info, err := s.Server()
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != "e32b5a0f-1ad9-46a1-9225-4faeb22f8013" || info.Name != "pw_1" {
		t.Errorf("server info = %+v", info)
	}
}

func TestConcurrentQueriesOnOneConnection(t *testing.T) {
	f := start(t, "", 3, 10)
	s := mustConnect(t, f.addr) // MaxOpen 1: everything shares one connection

	// A changefeed waiting for changes must not block other queries.
	feed, err := r.DB("test").Table("items").Changes().Run(s)
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 20; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			var rows []any
			if err := r.DB("test").Table("items").ReadAll(&rows, s); err != nil || len(rows) != 10 {
				errs <- fmt.Errorf("scan: %d rows, %v", len(rows), err)
			}
		}()
		go func(i int) {
			defer wg.Done()
			var doc map[string]any
			id := i%10 + 1
			if err := r.DB("test").Table("items").Get(id).ReadOne(&doc, s); err != nil || doc["id"] != float64(id) {
				errs <- fmt.Errorf("get %d: %v, %v", id, doc, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestChangefeeds(t *testing.T) {
	f := start(t, "", 0, 2)
	s := mustConnect(t, f.addr)
	items := r.DB("test").Table("items")

	t.Run("table", func(t *testing.T) {
		cur, err := items.Changes().Run(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := items.Get(1).Update(map[string]any{"n": 11}).RunWrite(s); err != nil {
			t.Fatal(err)
		}
		var ch map[string]map[string]any
		if !cur.Next(&ch) {
			t.Fatalf("no change: %v", cur.Err())
		}
		if ch["old_val"]["n"] != 10.0 || ch["new_val"]["n"] != 11.0 {
			t.Errorf("change = %v", ch)
		}
		if err := cur.Close(); err != nil {
			t.Fatal(err)
		}
		waitFeeds(t, f, 0, "feed closed after STOP")
	})

	t.Run("include_initial and filter", func(t *testing.T) {
		cur, err := items.Filter(r.Row.Field("id").Gt(1)).Changes(r.ChangesOpts{IncludeInitial: true}).Run(s)
		if err != nil {
			t.Fatal(err)
		}
		defer cur.Close()
		var ch map[string]any
		if !cur.Next(&ch) {
			t.Fatalf("no initial value: %v", cur.Err())
		}
		if nv := ch["new_val"].(map[string]any); nv["id"] != 2.0 {
			t.Errorf("initial = %v", ch)
		}
		if _, err := items.Insert([]any{map[string]any{"id": 0}, map[string]any{"id": 9}}).RunWrite(s); err != nil {
			t.Fatal(err)
		}
		if !cur.Next(&ch) {
			t.Fatalf("no change: %v", cur.Err())
		}
		if nv := ch["new_val"].(map[string]any); nv["id"] != 9.0 || ch["old_val"] != nil {
			t.Errorf("change = %v (id 0 must be filtered out)", ch)
		}
	})

	t.Run("point", func(t *testing.T) {
		cur, err := items.Get(2).Changes(r.ChangesOpts{IncludeInitial: true}).Run(s)
		if err != nil {
			t.Fatal(err)
		}
		defer cur.Close()
		var ch map[string]any
		if !cur.Next(&ch) {
			t.Fatalf("no initial value: %v", cur.Err())
		}
		if _, err := items.Get(1).Delete().RunWrite(s); err != nil {
			t.Fatal(err)
		}
		if _, err := items.Get(2).Delete().RunWrite(s); err != nil {
			t.Fatal(err)
		}
		if !cur.Next(&ch) {
			t.Fatalf("no change: %v", cur.Err())
		}
		if ch["new_val"] != nil || ch["old_val"].(map[string]any)["id"] != 2.0 {
			t.Errorf("change = %v", ch)
		}
	})

	t.Run("limit ends the feed", func(t *testing.T) {
		var got []map[string]any
		if err := items.Changes(r.ChangesOpts{IncludeInitial: true}).Limit(1).ReadAll(&got, s); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Errorf("got %v", got)
		}
	})
}

// waitFeeds waits until the table has n open changefeeds.
func waitFeeds(t *testing.T, f *fixture, n int, what string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		got := f.table.Feeds()
		return got == n, fmt.Sprintf("%s: %d feeds open, want %d", what, got, n)
	})
}

// TestBlogQuery runs the seed blog post's collision fix through
// rethinkdb-go, unchanged.
func TestBlogQuery(t *testing.T) {
	f := start(t, "", 0, 0)
	f.b.AddDB("test")
	f.b.AddDB("app")
	f.b.AddDB("app")
	s := mustConnect(t, f.addr)

	var before []string
	if err := r.DBList().ReadAll(&before, s); err != nil || fmt.Sprint(before) != "[app rethinkdb test]" {
		t.Fatalf("dbList during collision = %v, %v", before, err)
	}
	_, err := r.DB("test").Table("items").Count().Run(s)
	if err == nil || !strings.HasPrefix(err.Error(), "rethinkdb: Database `test` is ambiguous; there are multiple databases with that name. in:") {
		t.Fatalf("ambiguous db error = %v", err)
	}

	q := r.DB("rethinkdb").Table("current_issues").
		Filter(map[string]any{"type": "db_name_collision"}).
		ConcatMap(func(row r.Term) r.Term { return row.Field("info").Field("ids") }).
		ForEach(func(id r.Term) r.Term {
			return r.DB("rethinkdb").Table("db_config").Get(id).Update(func(issue r.Term) any {
				return map[string]any{"name": issue.Field("name").Add("_").Add(id.Split("-").AtIndex(0))}
			})
		})
	var raw map[string]any
	if err := q.ReadOne(&raw, s); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(raw)
	if string(b) != `{"deleted":0,"errors":0,"inserted":0,"replaced":4,"skipped":0,"unchanged":0}` {
		t.Errorf("blog query = %s", b)
	}
	var issues []any
	if err := r.DB("rethinkdb").Table("current_issues").ReadAll(&issues, s); err != nil || len(issues) != 0 {
		t.Errorf("current_issues after fix = %v, %v", issues, err)
	}
	var after []string
	if err := r.DBList().ReadAll(&after, s); err != nil || len(after) != 5 {
		t.Errorf("dbList after fix = %v, %v", after, err)
	}
}

// rawConn speaks the wire protocol directly, to check framing details the
// driver hides.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	s, err := connectRaw(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.c.Close() })
	s.t = t
	return s
}

// connectRaw does the V1_0 handshake for admin with no password by hand.
func connectRaw(addr string) (*rawConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	rc := &rawConn{c: c, r: bufio.NewReader(c)}
	// Let the real client code do SCRAM: reuse rethinkdb-go through a
	// one-off connection is not possible, so compute SCRAM here.
	if err := scramHandshake(c, rc.r, "admin", ""); err != nil {
		c.Close()
		return nil, err
	}
	return rc, nil
}

func (rc *rawConn) send(token int64, q any) {
	rc.t.Helper()
	body, _ := json.Marshal(q)
	frame := make([]byte, 12+len(body))
	binary.LittleEndian.PutUint64(frame, uint64(token))
	binary.LittleEndian.PutUint32(frame[8:], uint32(len(body)))
	copy(frame[12:], body)
	if _, err := rc.c.Write(frame); err != nil {
		rc.t.Fatal(err)
	}
}

type rawResp struct {
	Token int64
	T     int   `json:"t"`
	E     int   `json:"e"`
	R     []any `json:"r"`
	N     []int `json:"n"`
}

func (rc *rawConn) recv() rawResp {
	rc.t.Helper()
	var hdr [12]byte
	if _, err := io.ReadFull(rc.r, hdr[:]); err != nil {
		rc.t.Fatal(err)
	}
	body := make([]byte, binary.LittleEndian.Uint32(hdr[8:]))
	if _, err := io.ReadFull(rc.r, body); err != nil {
		rc.t.Fatal(err)
	}
	var resp rawResp
	if err := json.Unmarshal(body, &resp); err != nil {
		rc.t.Fatal(err)
	}
	resp.Token = int64(binary.LittleEndian.Uint64(hdr[:8]))
	return resp
}

func TestFraming(t *testing.T) {
	f := start(t, "", 2, 5)
	rc := dialRaw(t, f.addr)
	scan := []any{15, []any{[]any{14, []any{"test"}}, "items"}}

	rc.send(1, []any{1, scan, map[string]any{}})
	resp := rc.recv()
	if resp.Token != 1 || resp.T != 3 || len(resp.R) != 2 || resp.N != nil {
		t.Fatalf("first batch = %+v, want SUCCESS_PARTIAL with 2 rows", resp)
	}
	rc.send(1, []any{2})
	if resp = rc.recv(); resp.T != 3 || len(resp.R) != 2 {
		t.Fatalf("second batch = %+v", resp)
	}
	rc.send(1, []any{3})
	if resp = rc.recv(); resp.Token != 1 || resp.T != 2 || len(resp.R) != 0 {
		t.Fatalf("STOP reply = %+v, want empty SUCCESS_SEQUENCE", resp)
	}
	rc.send(1, []any{2})
	if resp = rc.recv(); resp.T != 16 || resp.R[0] != "Token 1 not in stream cache." {
		t.Fatalf("CONTINUE after STOP = %+v", resp)
	}

	// An atom, a runtime error, and SERVER_INFO.
	rc.send(2, []any{1, []any{24, []any{1, 2}}})
	if resp = rc.recv(); resp.T != 1 || resp.R[0] != 3.0 {
		t.Fatalf("1+2 = %+v", resp)
	}
	rc.send(3, []any{1, []any{15, []any{[]any{14, []any{"nosuchdb"}}, "t"}}})
	if resp = rc.recv(); resp.T != 18 || resp.E != 4100000 || resp.R[0] != "Database `nosuchdb` does not exist." {
		t.Fatalf("missing db = %+v", resp)
	}
	rc.send(4, []any{5})
	if resp = rc.recv(); resp.T != 5 || resp.R[0].(map[string]any)["proxy"] != false {
		t.Fatalf("SERVER_INFO = %+v", resp)
	}

	// A changefeed: SUCCESS_PARTIAL with the SEQUENCE_FEED note; CONTINUE
	// blocks until a change, and other tokens are answered meanwhile.
	rc.send(5, []any{1, []any{152, []any{scan}}})
	if resp = rc.recv(); resp.T != 3 || fmt.Sprint(resp.N) != "[1]" || len(resp.R) != 0 {
		t.Fatalf("feed start = %+v", resp)
	}
	rc.send(5, []any{2})
	rc.send(6, []any{1, []any{56, []any{scan, map[string]any{"id": 42}}}})
	got := map[int64]rawResp{}
	for len(got) < 2 {
		resp = rc.recv()
		got[resp.Token] = resp
	}
	if got[6].T != 1 || got[5].T != 3 || len(got[5].R) != 1 {
		t.Fatalf("insert and feed batch = %+v", got)
	}
	// Point changefeeds carry ATOM_FEED.
	rc.send(7, []any{1, []any{152, []any{[]any{16, []any{scan, 1}}}}})
	if resp = rc.recv(); resp.T != 3 || fmt.Sprint(resp.N) != "[2]" {
		t.Fatalf("point feed start = %+v", resp)
	}
	// STOP with noreply gets no answer; the next query's answer comes next.
	rc.send(5, []any{3, nil, map[string]any{"noreply": true}})
	rc.send(8, []any{1, 7.0})
	if resp = rc.recv(); resp.Token != 8 {
		t.Fatalf("got token %d after noreply STOP, want 8", resp.Token)
	}
}

func BenchmarkGetRoundTrip(b *testing.B) {
	f := start(b, "", 0, 100)
	s := mustConnect(b, f.addr)
	q := r.DB("test").Table("items").Get(42)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var doc map[string]any
		if err := q.ReadOne(&doc, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFilterRoundTrip(b *testing.B) {
	f := start(b, "", 0, 100)
	s := mustConnect(b, f.addr)
	q := r.DB("test").Table("items").Filter(r.Row.Field("n").Gt(900))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var docs []map[string]any
		if err := q.ReadAll(&docs, s); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDisconnectEndsFeeds checks that a client going away while a CONTINUE
// waits on a changefeed ends the query and closes the feed.
func TestDisconnectEndsFeeds(t *testing.T) {
	f := start(t, "", 0, 1)
	rc := dialRaw(t, f.addr)
	scan := []any{15, []any{[]any{14, []any{"test"}}, "items"}}
	rc.send(1, []any{1, []any{152, []any{scan}}})
	if resp := rc.recv(); resp.T != 3 {
		t.Fatalf("feed start = %+v", resp)
	}
	rc.send(1, []any{2})
	waitFeeds(t, f, 1, "feed open")
	rc.c.Close()
	waitFeeds(t, f, 0, "feed closed after disconnect")
}

// TestServeStops checks that ending ctx stops Serve and closes clients.
func TestServeStops(t *testing.T) {
	b := reqltest.New()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- driver.Serve(ctx, ln, driver.Config{Backend: b}) }()
	rc := dialRaw(t, ln.Addr().String())
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.r.ReadByte(); err != io.EOF {
		t.Errorf("client read after shutdown: %v, want EOF", err)
	}
}
