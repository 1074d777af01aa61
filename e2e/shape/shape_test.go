package shape

import (
	"encoding/json"
	"reflect"
	"testing"
)

func parse(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name, recorded, got string
		want                []string
	}{
		{"same shape, other values", `{"a":1,"b":"x","c":[1,2],"d":null,"e":true}`, `{"a":7,"b":"y","c":[3],"d":null,"e":false}`, nil},
		{"type change", `{"cache_size_mb":256}`, `{"cache_size_mb":"auto"}`,
			[]string{`.cache_size_mb: recorded number, got string ("auto")`}},
		{"missing and extra", `{"a":1,"b":{"c":2}}`, `{"b":{"d":2}}`,
			[]string{".a: missing (recorded number)", ".b.c: missing (recorded number)", ".b.d: not in the recording (got number 2)"}},
		{"uuid keys", `{"connected_to":{"proxy-66d2e99c-0015-408e-8b4c-df0eef81f64e":true,"server_2":true}}`,
			`{"connected_to":{"proxy-0cb83966-5be9-45d4-9f19-e3b4bb04749b":true,"server_2":true}}`, nil},
		{"renamed server keys", `{"c":{"server_2_0bc9767e":true,"server_1__conflict__0892fd31_90c0_4986_9bbf_a8ee0a0ddd8b":true}}`,
			`{"c":{"server_2_e5446f17":true,"server_1__conflict__1892fd31_90c0_4986_9bbf_a8ee0a0ddd8b":true}}`, nil},
		{"array elements", `{"l":[{"host":"127.0.0.1","port":4000}]}`, `{"l":[{"host":"::1","port":"4000"}]}`,
			[]string{`.l[0].port: recorded number, got string ("4000")`}},
		{"empty recorded array", `{"l":[]}`, `{"l":[1,"a"]}`, nil},
		{"time object", `{"t":{"$reql_type$":"TIME","epoch_time":1.5,"timezone":"+00:00"}}`, `{"t":"2026-11-26T06:31:06Z"}`,
			[]string{`.t: recorded object, got string ("2026-11-26T06:31:06Z")`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff("", parse(t, tt.recorded), parse(t, tt.got))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Diff:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestCompareDocuments(t *testing.T) {
	recorded := parse(t, `[{"id":"a","name":"x"},{"id":"b","error":"e","name":"y"}]`).([]any)
	if d := CompareDocuments(recorded, parse(t, `[{"id":"c","error":"f","name":"z"},{"id":"d","name":"w"}]`).([]any)); d != nil {
		t.Errorf("same shapes in another order: %q", d)
	}
	d := CompareDocuments(recorded, parse(t, `[{"id":"c","name":1}]`).([]any))
	want := []string{"recorded 2 documents, got 1", `document 0 (id c).name: recorded string, got number (1)`}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got %q\nwant %q", d, want)
	}
	v, err := Normalize(map[string]any{"n": 1, "l": []int{1}})
	if err != nil || TypeOf(v.(map[string]any)["n"]) != "number" || TypeOf(v.(map[string]any)["l"]) != "array" {
		t.Errorf("Normalize: %v %v", v, err)
	}
}
