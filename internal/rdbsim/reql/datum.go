package reql

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"
)

// TypeName is the ReQL type name of a datum ("OBJECT", "PTYPE<TIME>", …), as
// typeOf and the server's error messages print it.
func TypeName(v any) string { return datumType(v) }

// datumType is the ReQL type name of a datum, as typeOf and error messages
// print it.
func datumType(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case bool:
		return "BOOL"
	case float64:
		return "NUMBER"
	case string:
		return "STRING"
	case []any:
		return "ARRAY"
	case map[string]any:
		if pt, ok := v["$reql_type$"].(string); ok {
			return "PTYPE<" + pt + ">"
		}
		return "OBJECT"
	}
	return "DATUM"
}

// printDatum renders a datum the way the server prints one inside error
// messages: objects one key per line with tab indentation, arrays inline.
func printDatum(v any) string {
	var b strings.Builder
	printIndent(&b, v, 1)
	return b.String()
}

func printIndent(b *strings.Builder, v any, depth int) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case float64:
		b.WriteString(formatNumber(v))
	case string:
		enc, _ := json.Marshal(v)
		b.Write(enc)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			printIndent(b, e, depth)
		}
		b.WriteByte(']')
	case map[string]any:
		b.WriteString("{\n")
		keys := sortedKeys(v)
		for i, k := range keys {
			b.WriteString(strings.Repeat("\t", depth))
			enc, _ := json.Marshal(k)
			b.Write(enc)
			b.WriteString(":\t")
			printIndent(b, v[k], depth+1)
			if i < len(keys)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(strings.Repeat("\t", depth-1))
		b.WriteByte('}')
	default:
		enc, _ := json.Marshal(v)
		b.Write(enc)
	}
}

// formatNumber prints integers without a decimal point, as the server does.
func formatNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e16 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// truthy is ReQL truthiness: only false and null are false.
func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	}
	return true
}

// typeRank orders datums of different types as the server does (by type name).
func typeRank(v any) int {
	switch datumType(v) {
	case "ARRAY":
		return 0
	case "BOOL":
		return 1
	case "NULL":
		return 2
	case "NUMBER":
		return 3
	case "OBJECT":
		return 4
	case "PTYPE<BINARY>":
		return 5
	case "PTYPE<TIME>":
		return 6
	case "STRING":
		return 7
	}
	return 8
}

// compareDatum orders two datums: <0, 0 or >0.
func compareDatum(a, b any) int {
	ra, rb := typeRank(a), typeRank(b)
	if ra != rb {
		return ra - rb
	}
	switch a := a.(type) {
	case nil:
		return 0
	case bool:
		bb := b.(bool)
		switch {
		case a == bb:
			return 0
		case !a:
			return -1
		}
		return 1
	case float64:
		bb := b.(float64)
		switch {
		case a < bb:
			return -1
		case a > bb:
			return 1
		}
		return 0
	case string:
		return strings.Compare(a, b.(string))
	case []any:
		bb := b.([]any)
		for i := 0; i < len(a) && i < len(bb); i++ {
			if c := compareDatum(a[i], bb[i]); c != 0 {
				return c
			}
		}
		return len(a) - len(bb)
	case map[string]any:
		bb := b.(map[string]any)
		if datumType(a) == "PTYPE<TIME>" {
			return compareDatum(a["epoch_time"], bb["epoch_time"])
		}
		// Objects compare as their sorted [key, value] pair lists.
		return compareDatum(pairs(a), pairs(bb))
	}
	return 0
}

func pairs(m map[string]any) []any {
	out := make([]any, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, []any{k, m[k]})
	}
	return out
}

func equalDatum(a, b any) bool {
	if typeRank(a) != typeRank(b) {
		return false
	}
	switch a := a.(type) {
	case []any:
		bb := b.([]any)
		if len(a) != len(bb) {
			return false
		}
		for i := range a {
			if !equalDatum(a[i], bb[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bb := b.(map[string]any)
		if datumType(a) == "PTYPE<TIME>" {
			return equalDatum(a["epoch_time"], bb["epoch_time"])
		}
		if len(a) != len(bb) {
			return false
		}
		for k, v := range a {
			w, ok := bb[k]
			if !ok || !equalDatum(v, w) {
				return false
			}
		}
		return true
	}
	return compareDatum(a, b) == 0
}

// copyDatum deep-copies a datum so that results never alias backend data.
func copyDatum(v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = copyDatum(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = copyDatum(e)
		}
		return out
	}
	return v
}

func sortDatums(items []any) {
	sort.SliceStable(items, func(i, j int) bool { return compareDatum(items[i], items[j]) < 0 })
}

// normalize converts Go values a backend may hand back (ints, typed slices
// and maps) into the plain JSON datum forms, by a JSON round trip when needed.
func normalize(v any) any {
	switch v := v.(type) {
	case nil, bool, float64, string:
		return v
	case int:
		return float64(v)
	case int64:
		return float64(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = normalize(e)
		}
		return out
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}

// Compare orders two datums as ReQL does (by type name, then value); <0, 0
// or >0. Backends can use it to sort rows by primary key.
func Compare(a, b any) int { return compareDatum(normalize(a), normalize(b)) }

// Equal reports whether two datums are equal in ReQL terms.
func Equal(a, b any) bool { return equalDatum(normalize(a), normalize(b)) }

// Print renders a datum as the server does inside error messages.
func Print(v any) string { return printDatum(normalize(v)) }
