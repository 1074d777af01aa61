package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

const recordings = "../../../e2e/testdata/rethinkdb-2.4.4/system-tables"

// dynamicKeys are objects whose keys are data (server names), not fields.
var dynamicKeys = map[string]bool{".network.connected_to": true}

// assertShapes compares the system tables seen by s with the recorded ones
// of a phase: every row must have the fields of a recorded row of the same
// kind, with the same JSON types.
func assertShapes(t *testing.T, phase string, s *simNode) {
	t.Helper()
	for _, table := range []string{"server_config", "server_status", "db_config", "table_config", "current_issues"} {
		b, err := os.ReadFile(filepath.Join(recordings, phase+"_"+table+".json"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var rec []any
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		compareRows(t, phase+"/"+table, rec, roundTrip(t, s.rows(table)))
	}
}

func roundTrip(t *testing.T, rows []map[string]any) []any {
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// kind groups rows that share a shape: issues by type, table_config rows by
// whether they are the error form.
func kind(row any) string {
	m, _ := row.(map[string]any)
	if typ, ok := m["type"].(string); ok {
		return typ
	}
	if _, ok := m["error"]; ok {
		return "error"
	}
	return ""
}

func compareRows(t *testing.T, where string, rec, got []any) {
	t.Helper()
	if len(rec) > 0 && len(got) == 0 {
		t.Errorf("%s: recorded %d rows, sim has none", where, len(rec))
	}
	for i, g := range got {
		var ref any
		for _, r := range rec {
			if kind(r) == kind(g) {
				ref = r
				break
			}
		}
		if ref == nil {
			if len(rec) > 0 {
				t.Errorf("%s: sim row %d of kind %q has no recorded counterpart", where, i, kind(g))
			}
			continue
		}
		for _, d := range shapeDiff("", ref, g) {
			t.Errorf("%s row %d: %s", where, i, d)
		}
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func shapeDiff(path string, ref, got any) []string {
	if jsonType(ref) != jsonType(got) {
		return []string{fmt.Sprintf("%s: recorded %s, sim %s", path, jsonType(ref), jsonType(got))}
	}
	var out []string
	switch r := ref.(type) {
	case map[string]any:
		g := got.(map[string]any)
		if dynamicKeys[path] {
			for _, gv := range g {
				for _, rv := range r {
					out = append(out, shapeDiff(path+".*", rv, gv)...)
					break
				}
			}
			return out
		}
		var keys []string
		for k := range r {
			keys = append(keys, k)
		}
		for k := range g {
			if _, ok := r[k]; !ok {
				out = append(out, fmt.Sprintf("%s: sim has extra field %q", path, k))
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s: sim lacks field %q", path, k))
				continue
			}
			out = append(out, shapeDiff(path+"."+k, r[k], gv)...)
		}
	case []any:
		g := got.([]any)
		if len(r) > 0 && len(g) > 0 {
			out = append(out, shapeDiff(path+"[]", r[0], g[0])...)
		}
	}
	return out
}
