// Package shape compares JSON documents by shape: the same field names,
// recursively, with the same JSON types. Values may differ (ids, times,
// ports), so the simulator's system tables can be checked against the
// recordings of a real server.
package shape

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Normalize turns a decoded value (any Go value encoding/json can marshal,
// e.g. what rethinkdb-go returns) into plain JSON types: map[string]any,
// []any, string, float64, bool, nil.
func Normalize(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// TypeOf is the JSON type name of a normalized value.
func TypeOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64, json.Number, int, int64:
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

// Keys that are data rather than field names (server_status.connected_to
// holds server names: "proxy-<uuid>", "server_1__conflict__<uuid>",
// "server_2_<first uuid block>") are compared with the uuid masked.
var (
	uuidRE      = regexp.MustCompile(`[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}`)
	uuidBlockRE = regexp.MustCompile(`_[0-9a-f]{8}$`)
)

func normKey(k string) string {
	return uuidBlockRE.ReplaceAllString(uuidRE.ReplaceAllString(k, "<uuid>"), "_<uuid block>")
}

// Diff lists how got's shape differs from recorded's, one line per
// difference: "path: recorded <type>, got <type>". Arrays: every element
// of got must have the shape of some element of recorded (when both have
// elements; an empty array says nothing about its elements' shape).
func Diff(path string, recorded, got any) []string {
	rt, gt := TypeOf(recorded), TypeOf(got)
	if rt != gt {
		return []string{fmt.Sprintf("%s: recorded %s, got %s (%s)", path, rt, gt, brief(got))}
	}
	switch rv := recorded.(type) {
	case map[string]any:
		gv := got.(map[string]any)
		rk, gk := map[string]string{}, map[string]string{}
		for k := range rv {
			rk[normKey(k)] = k
		}
		for k := range gv {
			gk[normKey(k)] = k
		}
		var diffs []string
		for _, nk := range sortedKeys(rk) {
			p := path + "." + rk[nk]
			if _, ok := gk[nk]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: missing (recorded %s)", p, TypeOf(rv[rk[nk]])))
				continue
			}
			diffs = append(diffs, Diff(p, rv[rk[nk]], gv[gk[nk]])...)
		}
		for _, nk := range sortedKeys(gk) {
			if _, ok := rk[nk]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s.%s: not in the recording (got %s %s)", path, gk[nk], TypeOf(gv[gk[nk]]), brief(gv[gk[nk]])))
			}
		}
		return diffs
	case []any:
		gv := got.([]any)
		if len(rv) == 0 {
			return nil
		}
		var diffs []string
		for i, g := range gv {
			diffs = append(diffs, closest(fmt.Sprintf("%s[%d]", path, i), rv, g)...)
		}
		return diffs
	}
	return nil
}

// closest returns no difference if got has the shape of one of recorded's
// elements, else the differences from the closest one.
func closest(path string, recorded []any, got any) []string {
	var best []string
	for i, r := range recorded {
		d := Diff(path, r, got)
		if len(d) == 0 {
			return nil
		}
		if i == 0 || len(d) < len(best) {
			best = d
		}
	}
	return best
}

// CompareDocuments compares the documents of a table (in any order) with
// the recorded ones: the same number, and each one shaped like one of the
// recorded documents.
func CompareDocuments(recorded, got []any) []string {
	var diffs []string
	if len(recorded) != len(got) {
		diffs = append(diffs, fmt.Sprintf("recorded %d documents, got %d", len(recorded), len(got)))
	}
	if len(recorded) == 0 {
		return diffs
	}
	for i, g := range got {
		label := fmt.Sprintf("document %d", i)
		if m, ok := g.(map[string]any); ok {
			if id, ok := m["id"]; ok {
				label += fmt.Sprintf(" (id %v)", id)
			}
		}
		diffs = append(diffs, closest(label, recorded, g)...)
	}
	return diffs
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func brief(v any) string {
	b, _ := json.Marshal(v)
	s := string(b)
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return strings.TrimSpace(s)
}
