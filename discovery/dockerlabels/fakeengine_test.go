package dockerlabels

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moby/moby/client"
)

// recorded is the directory of Engine answers recorded from Docker Engine
// 20.10.24 (API 1.41) on this project's machines; see testdata/README.md.
const recorded = "testdata/engine-20.10"

// fakeEngine replays recorded Engine JSON over HTTP. Its state (which
// containers exist and run) is the recorded one, changed by the test.
type fakeEngine struct {
	t   *testing.T
	srv *httptest.Server
	// down makes every request fail as a dead Engine's would (connection
	// closed without an answer).
	down atomic.Bool

	mu        sync.Mutex
	inspect   map[string]map[string]any // full id -> inspect JSON
	summaries map[string]map[string]any // full id -> list entry
	running   map[string]bool
	streams   []chan string // open event streams, each fed by emit
	cuts      []chan struct{}
	sinces    []string // the since of every events request
	listCalls int
}

func newFakeEngine(t *testing.T) *fakeEngine {
	t.Helper()
	f := &fakeEngine{t: t, inspect: map[string]map[string]any{}, summaries: map[string]map[string]any{}, running: map[string]bool{}}
	var list []map[string]any
	readJSON(t, filepath.Join(recorded, "containers.json"), &list)
	for _, c := range list {
		id := c["Id"].(string)
		f.summaries[id] = c
		f.running[id] = true
	}
	files, _ := filepath.Glob(filepath.Join(recorded, "inspect-*.json"))
	for _, file := range files {
		var c map[string]any
		readJSON(t, file, &c)
		f.inspect[c["Id"].(string)] = c
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.cutStreams()
		f.srv.Close()
	})
	return f
}

func readJSON(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// recordedEvents returns the recorded event lines, in order.
func recordedEvents(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recorded, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (f *fakeEngine) client(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(client.WithHost("tcp://" + f.srv.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var versionPrefix = regexp.MustCompile(`^/v1\.\d+`)

func (f *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	if f.down.Load() {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	path := versionPrefix.ReplaceAllString(r.URL.Path, "")
	switch {
	case path == "/_ping":
		// As recorded in ping.txt.
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Ostype", "linux")
		w.Header().Set("Docker-Experimental", "false")
		fmt.Fprint(w, "OK")
	case path == "/containers/json":
		f.mu.Lock()
		f.listCalls++
		var out []map[string]any
		for id, c := range f.summaries {
			if f.running[id] {
				out = append(out, c)
			}
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	case strings.HasPrefix(path, "/containers/") && strings.HasSuffix(path, "/json"):
		ref := strings.TrimSuffix(strings.TrimPrefix(path, "/containers/"), "/json")
		f.mu.Lock()
		c, ok := f.lookup(ref)
		var body []byte
		if ok {
			body, _ = json.Marshal(c)
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"message":"No such container: %s"}`+"\n", ref)
			return
		}
		w.Write(body)
	case path == "/events":
		f.serveEvents(w, r)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"message":"page not found"}`)
	}
}

// lookup finds a container by id, id prefix or name, as the Engine does,
// with its State reflecting f.running. Called with mu held.
func (f *fakeEngine) lookup(ref string) (map[string]any, bool) {
	for id, c := range f.inspect {
		if id == ref || c["Name"] == "/"+ref || (len(ref) >= 12 && strings.HasPrefix(id, ref)) {
			cp := map[string]any{}
			for k, v := range c {
				cp[k] = v
			}
			st := map[string]any{}
			for k, v := range c["State"].(map[string]any) {
				st[k] = v
			}
			st["Running"] = f.running[id]
			if !f.running[id] {
				st["Status"] = "exited"
			}
			cp["State"] = st
			return cp, true
		}
	}
	return nil, false
}

func (f *fakeEngine) serveEvents(w http.ResponseWriter, r *http.Request) {
	ch := make(chan string, 100)
	cut := make(chan struct{})
	f.mu.Lock()
	f.streams = append(f.streams, ch)
	f.cuts = append(f.cuts, cut)
	f.sinces = append(f.sinces, r.URL.Query().Get("since"))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	bw := bufio.NewWriter(w)
	for {
		select {
		case line := <-ch:
			bw.WriteString(line + "\n")
			bw.Flush()
			w.(http.Flusher).Flush()
		case <-cut:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// emit sends event lines to every open stream.
func (f *fakeEngine) emit(lines ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.streams {
		for _, l := range lines {
			ch <- l
		}
	}
}

// cutStreams ends every open event stream (as an Engine restart would).
func (f *fakeEngine) cutStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.cuts {
		close(c)
	}
	f.cuts, f.streams = nil, nil
}

func (f *fakeEngine) setRunning(id string, running bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running[id] = running
}

func (f *fakeEngine) streamCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sinces)
}

func (f *fakeEngine) sinceOf(i int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sinces[i]
}

func (f *fakeEngine) lists() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listCalls
}
