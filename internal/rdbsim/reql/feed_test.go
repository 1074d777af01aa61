package reql_test

import (
	"context"
	"testing"
	"time"

	r "gopkg.in/rethinkdb/rethinkdb-go.v6"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

// TestFilteredFeed checks how a filter shapes changes: a row leaving the
// filter shows as new_val null, rows outside it are not reported.
func TestFilteredFeed(t *testing.T) {
	b := fixture()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := reql.Run(ctx, b, wire(t, people().Filter(r.Row.Field("age").Gt(25)).Changes()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stream == nil || !res.Stream.Feed() || res.AtomFeed {
		t.Fatalf("result = %+v, want a sequence feed", res)
	}
	defer res.Stream.Close()

	writes := []r.Term{
		people().Get(2).Update(map[string]any{"age": 21}), // outside before and after: not reported
		people().Get(1).Update(map[string]any{"age": 10}), // leaves the filter
		people().Get(2).Update(map[string]any{"age": 50}), // enters it
	}
	for _, w := range writes {
		if _, err := run(t, b, w); err != nil {
			t.Fatal(err)
		}
	}
	var got []any
	for len(got) < 2 {
		batch, more, err := res.Stream.Next(ctx)
		if err != nil || !more {
			t.Fatalf("Next: %v, more=%v", err, more)
		}
		got = append(got, batch...)
	}
	want := `[{"new_val":null,"old_val":{"age":30,"id":1,"name":"ann","tags":["a","b"]}},` +
		`{"new_val":{"age":50,"id":2,"name":"bob","tags":["b"]},"old_val":null}]`
	if s := jsonOf(t, got); s != want {
		t.Errorf("changes = %s\nwant %s", s, want)
	}
}

func TestForEachEmpty(t *testing.T) {
	got, err := run(t, fixture(), r.Expr([]any{}).ForEach(func(x r.Term) r.Term { return people().Get(x).Delete() }))
	if err != nil {
		t.Fatal(err)
	}
	if s := jsonOf(t, got); s != `{}` {
		t.Errorf("got %s", s)
	}
}
