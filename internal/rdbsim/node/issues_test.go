package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestIssueTextMatchesRecording rebuilds the db_name_collision issues of
// phase 03 from the recorded ids and compares them with the recording,
// except for the issue ids, which the sim derives its own way.
func TestIssueTextMatchesRecording(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(recordings, "03_after_proxy_via_server_1_current_issues.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want []map[string]any
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{Proxy: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, is := range want {
		info := is["info"].(map[string]any)
		for _, id := range info["ids"].([]any) {
			n.meta.DBs[id.(string)] = &DBMeta{ID: id.(string), Name: info["name"].(string)}
		}
	}
	n.mu.Lock()
	got := roundTrip(t, n.issuesLocked())
	n.mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("got %d issues, want %d", len(got), len(want))
	}
	for i := range want {
		g := got[i].(map[string]any)
		delete(g, "id")
		delete(want[i], "id")
		gb, _ := json.Marshal(g)
		wb, _ := json.Marshal(want[i])
		if string(gb) != string(wb) {
			t.Errorf("issue %d:\n got %s\nwant %s", i, gb, wb)
		}
	}
}
