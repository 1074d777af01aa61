package node

import (
	"slices"
	"testing"
)

func TestMetaMerge(t *testing.T) {
	db := func(id, name string, c uint64, w string, deleted bool) *DBMeta {
		return &DBMeta{ID: id, Name: name, Deleted: deleted, V: Version{C: c, W: w}}
	}
	tests := []struct {
		name          string
		mine, theirs  []*DBMeta
		want          []string // live "id=name", sorted by name then id
		changed, back bool
	}{
		{"both sides' test databases coexist",
			[]*DBMeta{db("a", "test", 1, "s1", false)}, []*DBMeta{db("b", "test", 1, "s3", false)},
			[]string{"a=test", "b=test"}, true, true},
		{"a newer rename wins",
			[]*DBMeta{db("a", "test", 1, "s1", false)}, []*DBMeta{db("a", "test_a", 5, "s3", false)},
			[]string{"a=test_a"}, true, false},
		{"an older copy loses",
			[]*DBMeta{db("a", "test_a", 5, "s3", false)}, []*DBMeta{db("a", "test", 1, "s1", false)},
			[]string{"a=test_a"}, false, true},
		{"a drop beats an older copy",
			[]*DBMeta{db("a", "app", 2, "s1", false)}, []*DBMeta{db("a", "app", 3, "s2", true)},
			nil, true, false},
		{"equal clocks are ordered by writer",
			[]*DBMeta{db("a", "x", 4, "s1", false)}, []*DBMeta{db("a", "y", 4, "s2", false)},
			[]string{"a=y"}, true, false},
		{"identical metadata changes nothing",
			[]*DBMeta{db("a", "x", 4, "s1", false)}, []*DBMeta{db("a", "x", 4, "s1", false)},
			[]string{"a=x"}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, o := newMeta(), newMeta()
			for _, d := range tc.mine {
				m.DBs[d.ID] = d
			}
			for _, d := range tc.theirs {
				o.DBs[d.ID] = d
			}
			changed, back := m.merge(o)
			var got []string
			for _, d := range m.liveDBs() {
				got = append(got, d.ID+"="+d.Name)
			}
			if !slices.Equal(got, tc.want) || changed != tc.changed || back != tc.back {
				t.Errorf("got %v changed=%v behind=%v; want %v %v %v", got, changed, back, tc.want, tc.changed, tc.back)
			}
			// Merging is idempotent.
			if c, _ := m.merge(o); c {
				t.Error("second merge changed something")
			}
		})
	}
}

func TestDialOrder(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{[]string{"127.0.0.1:29015", "10.0.0.2:29015", "[::1]:29015", "[fd00::2]:29015"},
			[]string{"10.0.0.2:29015", "[fd00::2]:29015", "127.0.0.1:29015", "[::1]:29015"}},
		{[]string{"127.0.0.1:4000", "[::1]:4000"}, []string{"127.0.0.1:4000", "[::1]:4000"}},
		{[]string{"localhost:1", "db1:29015"}, []string{"db1:29015", "localhost:1"}},
	}
	for _, tc := range tests {
		got := slices.Clone(tc.in)
		sortDialOrder(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("sortDialOrder(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		host string
	}{{"vm"}, {"my-host.example.com"}, {""}, {"Ünïcode"}} {
		n := generatedServerName(tc.host)
		if !validServerName(n) {
			t.Errorf("generated name %q from %q is not a valid server name", n, tc.host)
		}
	}
	if issueID("db_name_collision", "b", "a") != issueID("db_name_collision", "a", "b") {
		t.Error("issue ids depend on the order of the ids")
	}
	if !isUUID(issueID("x", "a")) || !isUUID(newUUID()) {
		t.Error("not a UUID")
	}
}
