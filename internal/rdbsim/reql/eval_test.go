package reql_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	r "gopkg.in/rethinkdb/rethinkdb-go.v6"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql/reqltest"
)

// wire turns a rethinkdb-go term into the JSON form the server receives.
func wire(t *testing.T, term r.Term) any {
	t.Helper()
	built, err := term.Build()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	b, err := json.Marshal(built)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var raw any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return raw
}

// run evaluates term and drains a finite stream into an array.
func run(t *testing.T, b reql.Backend, term r.Term) (any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := reql.Run(ctx, b, wire(t, term), nil)
	if err != nil {
		return nil, err
	}
	if res.Stream == nil {
		return res.Atom, nil
	}
	defer res.Stream.Close()
	if res.Stream.Feed() {
		t.Fatalf("unexpected changefeed")
	}
	out := []any{}
	for {
		batch, more, err := res.Stream.Next(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, batch...)
		if !more {
			return out, nil
		}
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("marshal result: %v", err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// fixture: test.people with three rows.
func fixture() *reqltest.Backend {
	b := reqltest.New()
	dbs, _ := b.DBs(context.Background())
	b.AddTable(dbs[0].ID, "people",
		map[string]any{"id": 1, "name": "ann", "age": 30, "tags": []any{"a", "b"}},
		map[string]any{"id": 2, "name": "bob", "age": 20, "tags": []any{"b"}},
		map[string]any{"id": 3, "name": "cid", "age": 40, "addr": map[string]any{"city": "x"}},
	)
	return b
}

func people() r.Term { return r.DB("test").Table("people") }

func TestEvalReads(t *testing.T) {
	tests := []struct {
		name string
		q    r.Term
		want string
	}{
		{"expr", r.Expr(map[string]any{"a": []any{1, "x", nil, true}}), `{"a":[1,"x",null,true]}`},
		{"get", people().Get(2), `{"age":20,"id":2,"name":"bob","tags":["b"]}`},
		{"get missing", people().Get(9), `null`},
		{"get field", people().Get(1).Field("name"), `"ann"`},
		{"bracket nth", r.Expr([]any{5, 6, 7}).Nth(-1), `7`},
		{"getAll", people().GetAll(3, 1, 9).Field("id"), `[3,1]`},
		{"getAll index id", people().GetAllByIndex("id", 2).Field("name"), `["bob"]`},
		{"count", people().Count(), `3`},
		{"count pred", people().Count(func(x r.Term) r.Term { return x.Field("age").Gt(25) }), `2`},
		{"count value", r.Expr([]any{1, 2, 1}).Count(1), `2`},
		{"filter object", people().Filter(map[string]any{"name": "bob"}).Field("id"), `[2]`},
		{"filter nested object", people().Filter(map[string]any{"addr": map[string]any{"city": "x"}}).Field("id"), `[3]`},
		{"filter func", people().Filter(func(x r.Term) r.Term { return x.Field("age").Ge(30) }).Field("id"), `[1,3]`},
		{"filter row", people().Filter(r.Row.Field("age").Lt(30)).Field("name"), `["bob"]`},
		{"filter missing field skipped", people().Filter(r.Row.Field("addr").Field("city").Eq("x")).Field("id"), `[3]`},
		{"filter default true", people().Filter(r.Row.Field("addr").Field("city").Eq("x"), r.FilterOpts{Default: true}).Field("id"), `[1,2,3]`},
		{"map", people().Map(func(x r.Term) r.Term { return x.Field("age").Mul(2) }), `[60,40,80]`},
		{"concatMap", people().ConcatMap(r.Row.Field("tags").Default([]any{})), `["a","b","b"]`},
		{"pluck", people().Get(1).Pluck("id", "name"), `{"id":1,"name":"ann"}`},
		{"pluck seq", people().Pluck("id").Limit(2), `[{"id":1},{"id":2}]`},
		{"without", people().Get(2).Without("tags", "age"), `{"id":2,"name":"bob"}`},
		{"hasFields", people().HasFields("addr").Field("id"), `[3]`},
		{"hasFields obj", r.Expr(map[string]any{"a": 1}).HasFields("a"), `true`},
		{"keys", people().Get(3).Keys(), `["addr","age","id","name"]`},
		{"values", r.Expr(map[string]any{"b": 2, "a": 1}).Values(), `[1,2]`},
		{"contains", r.Expr([]any{1, 2}).Contains(2), `true`},
		{"contains func", people().Field("age").Contains(func(x r.Term) r.Term { return x.Gt(35) }), `true`},
		{"limit", people().Limit(1).Field("id"), `[1]`},
		{"skip", people().Skip(2).Field("id"), `[3]`},
		{"orderBy desc", people().OrderBy(r.Desc("age")).Field("name"), `["cid","ann","bob"]`},
		{"orderBy func", people().OrderBy(func(x r.Term) r.Term { return x.Field("name") }).Field("id"), `[1,2,3]`},
		{"orderBy index", people().OrderBy(r.OrderByOpts{Index: r.Desc("id")}).Field("id"), `[3,2,1]`},
		{"distinct", r.Expr([]any{3, 1, 3, 2}).Distinct(), `[1,2,3]`},
		{"split", r.Expr("a-b-c").Split("-"), `["a","b","c"]`},
		{"split max", r.Expr("a-b-c").Split("-", 1), `["a","b-c"]`},
		{"split ws", r.Expr(" a  b ").Split(), `["a","b"]`},
		{"add num", r.Expr(1).Add(2, 3), `6`},
		{"add str", r.Expr("a").Add("_").Add("b"), `"a_b"`},
		{"add arr", r.Expr([]any{1}).Add([]any{2}), `[1,2]`},
		{"sub", r.Expr(10).Sub(4), `6`},
		{"mul", r.Expr(3).Mul(4), `12`},
		{"div", r.Expr(9).Div(2), `4.5`},
		{"mod", r.Expr(9).Mod(4), `1`},
		{"eq", r.Expr(map[string]any{"a": 1}).Eq(map[string]any{"a": 1}), `true`},
		{"ne", r.Expr(1).Ne(2), `true`},
		{"lt", r.Expr(1).Lt(2), `true`},
		{"le", r.Expr(2).Le(2), `true`},
		{"gt", r.Expr("b").Gt("a"), `true`},
		{"ge", r.Expr(1).Ge(2), `false`},
		{"type order", r.Expr([]any{}).Lt(true), `true`},
		{"and", r.And(true, 1), `1`},
		{"or", r.Or(false, nil, "x"), `"x"`},
		{"not", r.Expr(nil).Not(), `true`},
		{"branch", r.Branch(r.Expr(1).Gt(2), "a", "b"), `"b"`},
		{"default null", r.Expr(nil).Default(5), `5`},
		{"default missing", r.Expr(map[string]any{}).Field("x").Default("d"), `"d"`},
		{"default func", r.Expr(map[string]any{"a": 1}).Field("b").Default(func(e r.Term) r.Term { return e }), `"No attribute ` + "`b`" + ` in object:\n{\n\t\"a\":\t1\n}"`},
		{"coerce string", r.Expr(12).CoerceTo("string"), `"12"`},
		{"coerce number", r.Expr("1.5").CoerceTo("number"), `1.5`},
		{"coerce array", r.Expr(map[string]any{"a": 1}).CoerceTo("array"), `[["a",1]]`},
		{"coerce object", r.Expr([]any{[]any{"a", 1}}).CoerceTo("object"), `{"a":1}`},
		{"coerce table", people().Field("id").CoerceTo("array"), `[1,2,3]`},
		{"typeOf", r.Expr([]any{}).TypeOf(), `"ARRAY"`},
		{"typeOf table", people().TypeOf(), `"TABLE"`},
		{"typeOf selection", people().Get(1).TypeOf(), `"SELECTION<OBJECT>"`},
		{"do", r.Do(2, 3, func(a, b r.Term) r.Term { return a.Mul(b) }), `6`},
		{"object", r.Object("a", 1, "b", 2), `{"a":1,"b":2}`},
		{"merge", r.Expr(map[string]any{"a": map[string]any{"x": 1}}).Merge(map[string]any{"a": map[string]any{"y": 2}}), `{"a":{"x":1,"y":2}}`},
		{"merge func", people().Get(1).Pluck("id").Merge(func(x r.Term) any { return map[string]any{"n": x.Field("id").Add(1)} }), `{"id":1,"n":2}`},
		{"append", r.Expr([]any{1}).Append(2), `[1,2]`},
		{"prepend", r.Expr([]any{1}).Prepend(0), `[0,1]`},
		{"isEmpty", people().Filter(map[string]any{"id": 7}).IsEmpty(), `true`},
		{"union", r.Expr([]any{1}).Union([]any{2}), `[1,2]`},
		{"sum", people().Sum("age"), `90`},
		{"avg", people().Avg("age"), `30`},
		{"max", people().Max("age").Field("name"), `"cid"`},
		{"min func", people().Min(func(x r.Term) r.Term { return x.Field("age") }).Field("name"), `"bob"`},
		{"match", r.Expr("abc-123").Match("([0-9]+)").Field("groups").Nth(0).Field("str"), `"123"`},
		{"match none", r.Expr("abc").Match("z"), `null`},
		{"upcase", r.Expr("aB").Upcase(), `"AB"`},
		{"uuid shape", r.UUID().Match("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$").Ne(nil), `true`},
		{"now", r.Now().TypeOf(), `"PTYPE<TIME>"`},
		{"dbList", r.DBList(), `["rethinkdb","test"]`},
		{"tableList", r.DB("test").TableList(), `["people"]`},
		{"tableList default db", r.TableList(), `["people"]`},
		{"table default db", r.Table("people").Count(), `3`},
		{"range", r.Range(3), `[0,1,2]`},
		{"toJSON", r.Expr(map[string]any{"a": 1}).ToJSON(), `"{\"a\":1}"`},
		{"args", people().GetAll(r.Args([]any{3, 1})).Field("id"), `[3,1]`},
		{"db config", r.DB("test").Config().Field("name"), `"test"`},
		{"slice", r.Expr([]any{1, 2, 3, 4}).Slice(1, -1), `[2,3]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := run(t, fixture(), tc.q)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if s := jsonOf(t, got); s != tc.want {
				t.Errorf("got %s, want %s", s, tc.want)
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	b := fixture()
	dbs, _ := b.DBs(context.Background())
	_ = dbs
	dup := reqltest.New()
	dup.AddDB("test")
	tests := []struct {
		name    string
		b       reql.Backend
		q       r.Term
		kind    reql.ErrorKind
		typ     reql.ErrorType
		message string
	}{
		{"missing db", b, r.DB("nosuchdb").Table("t"), reql.RuntimeError, reql.ErrOpFailed, "Database `nosuchdb` does not exist."},
		{"missing table", b, r.DB("test").Table("nosuch"), reql.RuntimeError, reql.ErrOpFailed, "Table `test.nosuch` does not exist."},
		{"ambiguous db", dup, r.DB("test").Table("t1").Count(), reql.RuntimeError, reql.ErrOpFailed, "Database `test` is ambiguous; there are multiple databases with that name."},
		{"bracket non-object", b, r.Expr(1).Field("x"), reql.RuntimeError, reql.ErrQueryLogic, "Cannot perform get_field on a non-object non-sequence `1`."},
		{"bracket non-object bracket", b, r.Expr(1).AtIndex("x"), reql.RuntimeError, reql.ErrQueryLogic, "Cannot perform bracket on a non-object non-sequence `1`."},
		{"no attribute", b, r.Expr(map[string]any{"a": 1, "b": map[string]any{"c": "d"}}).Field("x"), reql.RuntimeError, reql.ErrNonExistence, "No attribute `x` in object:\n{\n\t\"a\":\t1,\n\t\"b\":\t{\n\t\t\"c\":\t\"d\"\n\t}\n}"},
		{"user error", b, r.Do(1, func(x r.Term) r.Term { return r.Error("boom") }), reql.RuntimeError, reql.ErrUser, "boom"},
		{"unsupported term", b, people().Group("age"), reql.RuntimeError, reql.ErrQueryLogic, "rethinkdb-sim: term GROUP (144) is not supported"},
		{"index out of bounds", b, r.Expr([]any{1}).Nth(3), reql.RuntimeError, reql.ErrNonExistence, "Index out of bounds: 3"},
		{"add mismatch", b, r.Expr(1).Add("a"), reql.RuntimeError, reql.ErrQueryLogic, "Expected type NUMBER but found STRING."},
		{"divide by zero", b, r.Expr(1).Div(0), reql.RuntimeError, reql.ErrQueryLogic, "Cannot divide by zero."},
		{"result db", b, r.DB("test"), reql.RuntimeError, reql.ErrQueryLogic, "Query result must be of type DATUM, GROUPED_DATA, or STREAM (got DATABASE)."},
		{"coerce number", b, r.Expr("abc").CoerceTo("number"), reql.RuntimeError, reql.ErrQueryLogic, "Could not coerce `abc` to NUMBER."},
		{"filter default error", b, people().Filter(r.Row.Field("nope"), r.FilterOpts{Default: r.Error("no")}), reql.RuntimeError, reql.ErrUser, "no"},
		{"count feed", b, people().Changes().Count(), reql.RuntimeError, reql.ErrQueryLogic, "Cannot call a terminal (`reduce`, `count`, etc.) on an infinite stream (such as a changefeed)."},
		{"getAll secondary", b, people().GetAllByIndex("name", "x"), reql.RuntimeError, reql.ErrQueryLogic, "rethinkdb-sim: getAll on secondary index \"name\" is not supported"},
		{"dbCreate exists", b, r.DBCreate("test"), reql.RuntimeError, reql.ErrOpFailed, "Database `test` already exists."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, tc.b, tc.q)
			var re *reql.Error
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a *reql.Error", err)
			}
			if re.Kind != tc.kind || re.Type != tc.typ || re.Msg != tc.message {
				t.Errorf("got (%d, %d, %q), want (%d, %d, %q)", re.Kind, re.Type, re.Msg, tc.kind, tc.typ, tc.message)
			}
		})
	}
}

// changedNames reduces a config change to [old name, new name], with null
// for a row that is not there (its id is random).
func changedNames(c r.Term) any {
	name := func(v r.Term) r.Term { return r.Branch(v.Eq(nil), nil, v.Field("name")) }
	return []any{name(c.Field("old_val")), name(c.Field("new_val"))}
}

func TestEvalWrites(t *testing.T) {
	type step struct {
		q    r.Term
		want string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"insert then read", []step{
			{people().Insert(map[string]any{"id": 4, "name": "dan"}), `{"deleted":0,"errors":0,"inserted":1,"replaced":0,"skipped":0,"unchanged":0}`},
			{people().Get(4), `{"id":4,"name":"dan"}`},
		}},
		{"insert conflict error", []step{
			{people().Insert(map[string]any{"id": 1}), `{"deleted":0,"errors":1,"first_error":"Duplicate primary key ` + "`id`" + `:\n{\n\t\"age\":\t30,\n\t\"id\":\t1,\n\t\"name\":\t\"ann\",\n\t\"tags\":\t[\"a\", \"b\"]\n}\n{\n\t\"id\":\t1\n}","inserted":0,"replaced":0,"skipped":0,"unchanged":0}`},
		}},
		{"insert conflict update", []step{
			{people().Insert(map[string]any{"id": 1, "x": 1}, r.InsertOpts{Conflict: "update"}), `{"deleted":0,"errors":0,"inserted":0,"replaced":1,"skipped":0,"unchanged":0}`},
			{people().Get(1).Field("x"), `1`},
			{people().Get(1).Field("name"), `"ann"`},
		}},
		{"insert conflict replace", []step{
			{people().Insert(map[string]any{"id": 1, "x": 1}, r.InsertOpts{Conflict: "replace"}), `{"deleted":0,"errors":0,"inserted":0,"replaced":1,"skipped":0,"unchanged":0}`},
			{people().Get(1), `{"id":1,"x":1}`},
		}},
		{"insert return changes", []step{
			{people().Insert(map[string]any{"id": 5}, r.InsertOpts{ReturnChanges: true}), `{"changes":[{"new_val":{"id":5},"old_val":null}],"deleted":0,"errors":0,"inserted":1,"replaced":0,"skipped":0,"unchanged":0}`},
		}},
		{"update object", []step{
			{people().Get(1).Update(map[string]any{"age": 31}), `{"deleted":0,"errors":0,"inserted":0,"replaced":1,"skipped":0,"unchanged":0}`},
			{people().Get(1).Field("age"), `31`},
		}},
		{"update unchanged", []step{
			{people().Get(1).Update(map[string]any{"age": 30}), `{"deleted":0,"errors":0,"inserted":0,"replaced":0,"skipped":0,"unchanged":1}`},
		}},
		{"update missing get skipped", []step{
			{people().Get(99).Update(map[string]any{"age": 1}), `{"deleted":0,"errors":0,"inserted":0,"replaced":0,"skipped":1,"unchanged":0}`},
		}},
		{"update func on selection", []step{
			{people().Filter(r.Row.Field("age").Gt(25)).Update(func(x r.Term) any { return map[string]any{"age": x.Field("age").Add(1)} }), `{"deleted":0,"errors":0,"inserted":0,"replaced":2,"skipped":0,"unchanged":0}`},
			{people().Field("age"), `[31,20,41]`},
		}},
		{"update row error counted", []step{
			{people().Update(func(x r.Term) any { return map[string]any{"c": x.Field("addr").Field("city")} }), `{"deleted":0,"errors":2,"first_error":"No attribute ` + "`addr`" + ` in object:\n{\n\t\"age\":\t30,\n\t\"id\":\t1,\n\t\"name\":\t\"ann\",\n\t\"tags\":\t[\"a\", \"b\"]\n}","inserted":0,"replaced":1,"skipped":0,"unchanged":0}`},
		}},
		{"update pk change refused", []step{
			{people().Get(1).Update(map[string]any{"id": 7}), `{"deleted":0,"errors":1,"first_error":"Primary key ` + "`id`" + ` cannot be changed (` + "`" + `{\n\t\"age\":\t30,\n\t\"id\":\t1,\n\t\"name\":\t\"ann\",\n\t\"tags\":\t[\"a\", \"b\"]\n}` + "`" + ` -> ` + "`" + `{\n\t\"age\":\t30,\n\t\"id\":\t7,\n\t\"name\":\t\"ann\",\n\t\"tags\":\t[\"a\", \"b\"]\n}` + "`" + `).","inserted":0,"replaced":0,"skipped":0,"unchanged":0}`},
		}},
		{"update return changes", []step{
			{people().Get(2).Update(map[string]any{"age": 21}, r.UpdateOpts{ReturnChanges: true}), `{"changes":[{"new_val":{"age":21,"id":2,"name":"bob","tags":["b"]},"old_val":{"age":20,"id":2,"name":"bob","tags":["b"]}}],"deleted":0,"errors":0,"inserted":0,"replaced":1,"skipped":0,"unchanged":0}`},
		}},
		{"replace", []step{
			{people().Get(2).Replace(map[string]any{"id": 2, "z": true}), `{"deleted":0,"errors":0,"inserted":0,"replaced":1,"skipped":0,"unchanged":0}`},
			{people().Get(2), `{"id":2,"z":true}`},
			{people().Get(8).Replace(map[string]any{"id": 8}), `{"deleted":0,"errors":0,"inserted":1,"replaced":0,"skipped":0,"unchanged":0}`},
		}},
		{"delete", []step{
			{people().Get(2).Delete(), `{"deleted":1,"errors":0,"inserted":0,"replaced":0,"skipped":0,"unchanged":0}`},
			{people().Get(2).Delete(), `{"deleted":0,"errors":0,"inserted":0,"replaced":0,"skipped":1,"unchanged":0}`},
			{people().Filter(r.Row.Field("age").Gt(35)).Delete(), `{"deleted":1,"errors":0,"inserted":0,"replaced":0,"skipped":0,"unchanged":0}`},
			{people().Count(), `1`},
		}},
		{"forEach", []step{
			{r.Expr([]any{1, 2}).ForEach(func(id r.Term) r.Term { return people().Get(id).Update(map[string]any{"seen": true}) }), `{"deleted":0,"errors":0,"inserted":0,"replaced":2,"skipped":0,"unchanged":0}`},
		}},
		{"dbs and tables", []step{
			{r.DBCreate("app").Field("dbs_created"), `1`},
			{r.DBCreate("app").Field("dbs_created").Default("exists"), `"exists"`}, // an OP_FAILED error is not caught by default
			{r.DB("app").TableCreate("items", r.TableCreateOpts{PrimaryKey: "k"}).Field("config_changes").Nth(0).Field("new_val").Field("primary_key"), `"k"`},
			{r.DB("app").Table("items").Insert(map[string]any{"k": "a"}).Field("inserted"), `1`},
			{r.DB("app").TableList(), `["items"]`},
			{r.DB("app").TableDrop("items").Pluck("tables_dropped"), `{"tables_dropped":1}`},
			{r.DBDrop("app").Pluck("dbs_dropped", "tables_dropped"), `{"dbs_dropped":1,"tables_dropped":0}`},
			{r.DBList(), `["rethinkdb","test"]`},
		}},
		{"config changes of dbs and tables", []step{
			{r.DBCreate("app").Field("config_changes").Map(changedNames), `[[null,"app"]]`},
			{r.DB("app").TableCreate("items").Field("config_changes").Map(changedNames), `[[null,"items"]]`},
			{r.DB("app").TableDrop("items").Field("config_changes").Map(changedNames), `[["items",null]]`},
			{r.DBDrop("app").Field("config_changes").Map(changedNames), `[["app",null]]`},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := fixture()
			for i, s := range tc.steps {
				got, err := run(t, b, s.q)
				if err != nil {
					if strings.Contains(s.want, "exists") {
						continue
					}
					t.Fatalf("step %d: %v", i, err)
				}
				if g := jsonOf(t, got); g != s.want {
					t.Errorf("step %d: got %s\nwant %s", i, g, s.want)
				}
			}
		})
	}
}

// TestBlogQuery runs the seed blog post's collision fix unchanged.
func TestBlogQuery(t *testing.T) {
	b := reqltest.New()
	b.AddDB("test")
	b.AddDB("app")
	b.AddDB("app")
	before, err := b.DBs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := run(t, b, blogQuery())
	if err != nil {
		t.Fatalf("blog query: %v", err)
	}
	if s := jsonOf(t, got); s != `{"deleted":0,"errors":0,"inserted":0,"replaced":4,"skipped":0,"unchanged":0}` {
		t.Fatalf("blog query returned %s", s)
	}
	names := map[string]bool{}
	for _, d := range before {
		names[d.Name+"_"+strings.Split(d.ID, "-")[0]] = true
	}
	got, err = run(t, b, r.DBList())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range got.([]any) {
		if n != "rethinkdb" && !names[n.(string)] {
			t.Errorf("unexpected db %v after the fix (want names from %v)", n, names)
		}
	}
	issues, err := run(t, b, r.DB("rethinkdb").Table("current_issues").Count())
	if err != nil || issues != 0.0 {
		t.Errorf("current_issues count = %v, %v; want 0", issues, err)
	}
}

func blogQuery() r.Term {
	return r.DB("rethinkdb").Table("current_issues").
		Filter(map[string]any{"type": "db_name_collision"}).
		ConcatMap(func(row r.Term) r.Term { return row.Field("info").Field("ids") }).
		ForEach(func(id r.Term) r.Term {
			return r.DB("rethinkdb").Table("db_config").Get(id).Update(func(issue r.Term) any {
				return map[string]any{"name": issue.Field("name").Add("_").Add(id.Split("-").AtIndex(0))}
			})
		})
}
