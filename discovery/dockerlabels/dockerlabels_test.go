package dockerlabels

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/internal/testutil"
)

func TestMain(m *testing.M) {
	// Integration tests (integration_test.go) need these to be quick too.
	retryMin, retryMax = 50*time.Millisecond, 500*time.Millisecond
	goleak.VerifyTestMain(m)
}

// Recorded container ids (testdata/engine-20.10).
const (
	id1     = "aad83f180c97fd1fb0c2561cc6fb5d466ec936891085edb6ca63046c9e20907e" // rec-rethinkdb-1, 172.18.0.2
	id2     = "04ce823465dd62629f31f9bad93b059b4aa0d7d17713bbfb9df94626551ca693" // rec-rethinkdb-2, 172.18.0.3, cluster-port 29016
	id3     = "5b7b297703cb9a72eaa7edfea8947f8f8be261af6f17dcb35939ba1d857a1cc7" // rec-rethinkdb-3, cluster-port "abc"
	id4     = "0a35f9250a97f7c7e13fb643c3a39507e9e1451e8f3c809b3da1e069cd34a287" // rec-rethinkdb-4, rec_default .6 + rec_backend 172.19.0.2
	idOther = "a95610fafe6c63f59736f563316427412583f0aae32b51f656330ad91c12497e" // rec-other-1: service "other", no cluster label
)

// runner runs a provider and keeps its latest group.
type runner struct {
	t      *testing.T
	mu     sync.Mutex
	latest []string // endpoints[/cluster], sorted
	n      int      // groups received
	cond   chan struct{}
}

func start(t *testing.T, p *Provider) *runner {
	t.Helper()
	r := &runner{t: t, cond: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan []discovery.Group)
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx, up) }()
	go func() {
		for {
			select {
			case gs := <-up:
				var eps []string
				for _, g := range gs {
					if g.Source != GroupSource {
						t.Errorf("group source %q", g.Source)
					}
					for _, pe := range g.Peers {
						if pe.Source != Name {
							t.Errorf("peer source %q", pe.Source)
						}
						s := strings.Join(pe.Endpoints(), "+")
						if pe.Cluster != "" {
							s += "/" + pe.Cluster
						}
						eps = append(eps, s)
					}
				}
				sort.Strings(eps)
				r.mu.Lock()
				r.latest, r.n = eps, r.n+1
				r.mu.Unlock()
				select {
				case r.cond <- struct{}{}:
				default:
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return r
}

// wait waits until the latest group is want.
func (r *runner) wait(desc string, want ...string) {
	r.t.Helper()
	want = append([]string(nil), want...) // sorted here, not the caller's
	sort.Strings(want)
	deadline := time.After(waitTimeout)
	for {
		r.mu.Lock()
		got, n := r.latest, r.n
		r.mu.Unlock()
		if n > 0 && (reflect.DeepEqual(got, want) || len(got) == 0 && len(want) == 0) {
			return
		}
		select {
		case <-r.cond:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			r.t.Fatalf("%s: peers %v, want %v", desc, got, want)
		}
	}
}

func (r *runner) current() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest
}

// waitTimeout bounds every wait on the provider.
const waitTimeout = 10 * time.Second

// waitStream waits until the provider follows the fake Engine's events.
func waitStream(t *testing.T, f *fakeEngine) {
	t.Helper()
	testutil.Eventually(t, waitTimeout, func() (bool, string) {
		n := f.streamCount()
		return n == 1, fmt.Sprintf("want an event stream, %d open", n)
	})
}

// waitLogCount waits until the log holds s at least n times.
func waitLogCount(t *testing.T, logs *testutil.SyncBuffer, s string, n int) {
	t.Helper()
	testutil.Eventually(t, waitTimeout, func() (bool, string) {
		out := logs.String()
		got := strings.Count(out, s)
		return got >= n, fmt.Sprintf("want %q %d times in the log, got %d:\n%s", s, n, got, out)
	})
}

func newLogger() (*slog.Logger, *testutil.SyncBuffer) {
	b := &testutil.SyncBuffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

func TestRecordedListing(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		want  []string
		inLog []string
	}{{
		name: "explicit selector, outside a container: every network",
		cfg:  Config{Selector: []string{"io.rethinkdb.cluster=alpha"}, SelfCandidates: []string{}},
		want: []string{"172.18.0.2:29015/alpha", "172.18.0.3:29016/alpha", "172.19.0.2:29015+172.18.0.6:29015/alpha"},
		inLog: []string{`ignoring container with a malformed label`, `container=rec-rethinkdb-3`,
			`io.rethinkdb.cluster-port=\"abc\": want a port number 1-65535`},
	}, {
		name: "explicit network by name",
		cfg:  Config{Selector: []string{"io.rethinkdb.cluster=alpha"}, Network: "rec_backend", SelfCandidates: []string{}},
		want: []string{"172.19.0.2:29015/alpha"},
	}, {
		name: "compose default from the recorded mountinfo: rec/rethinkdb on rec_default only",
		cfg:  Config{SelfCandidates: recordedSelf(t)},
		want: []string{"172.18.0.2:29015/alpha", "172.18.0.3:29016/alpha", "172.18.0.6:29015/alpha"},
	}, {
		name: "compose default, found by host name",
		cfg:  Config{SelfCandidates: []string{"aad83f180c97"}},
		want: []string{"172.18.0.2:29015/alpha", "172.18.0.3:29016/alpha", "172.18.0.6:29015/alpha"},
	}, {
		name: "key-only selector",
		cfg:  Config{Selector: []string{"com.docker.compose.project=rec", "com.docker.compose.service"}, SelfCandidates: []string{}},
		want: []string{"172.18.0.2:29015/alpha", "172.18.0.3:29016/alpha", "172.19.0.2:29015+172.18.0.6:29015/alpha", "172.18.0.5:29015"},
	}, {
		name: "no match",
		cfg:  Config{Selector: []string{"io.rethinkdb.cluster=beta"}, SelfCandidates: []string{}},
		want: nil,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEngine(t)
			log, logs := newLogger()
			tc.cfg.Client, tc.cfg.Logger = f.client(t), log
			p, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := start(t, p)
			r.wait("listing", tc.want...)
			for _, s := range tc.inLog {
				if !strings.Contains(logs.String(), s) {
					t.Errorf("log lacks %q:\n%s", s, logs)
				}
			}
		})
	}
}

func recordedSelf(t *testing.T) []string {
	t.Helper()
	mi, err := os.ReadFile(filepath.Join(recorded, "proc-self-mountinfo.txt"))
	if err != nil {
		t.Fatal(err)
	}
	cg, err := os.ReadFile(filepath.Join(recorded, "proc-self-cgroup.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return ContainerIDCandidates(string(mi), string(cg), "aad83f180c97")
}

func TestContainerIDCandidates(t *testing.T) {
	mi, _ := os.ReadFile(filepath.Join(recorded, "proc-self-mountinfo.txt"))
	cg, _ := os.ReadFile(filepath.Join(recorded, "proc-self-cgroup.txt"))
	tests := []struct {
		name                  string
		mountinfo, cg, hostnm string
		want                  []string
	}{
		{"recorded (cgroup v1)", string(mi), string(cg), "aad83f180c97", []string{id1}},
		{"mountinfo only (cgroup v2, private namespace)", string(mi), "0::/\n", "custom-host", []string{id1}},
		{"cgroup v2 systemd driver", "", "0::/system.slice/docker-" + id2 + ".scope\n", "", []string{id2}},
		{"host name only", "", "0::/\n", "04ce823465dd", []string{"04ce823465dd"}},
		{"not a container", "1 2 0:1 / / rw - ext4 /dev/vda rw\n", "0::/user.slice\n", "buildbox", nil},
		{"another container's paths mounted elsewhere are not ours",
			"9 1 254:0 /var/lib/docker/containers/" + id3 + "/hostname /mnt/x rw - ext4 /dev/vda rw\n", "", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ContainerIDCandidates(tc.mountinfo, tc.cg, tc.hostnm)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	f := newFakeEngine(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"outside a container without a selector", Config{SelfCandidates: []string{}}, "give a selector with --docker-label"},
		{"bad selector", Config{Selector: []string{"=x"}, SelfCandidates: []string{}}, `--docker-label: label selector "=x": empty key`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Client = f.client(t)
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// A container not started by compose, without a selector: a clear error,
// logged once, and no peers; Run still waits for its context.
func TestOwnContainerNotCompose(t *testing.T) {
	f := newFakeEngine(t)
	delete(f.inspect[id1]["Config"].(map[string]any)["Labels"].(map[string]any), LabelComposeService)
	log, logs := newLogger()
	p, err := New(Config{Client: f.client(t), Logger: log, SelfCandidates: []string{id1}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, p)
	logs.WaitLine(t, waitTimeout, "own container rec-rethinkdb-1 has no com.docker.compose.project and com.docker.compose.service labels")
}

func TestOwnContainerUnknown(t *testing.T) {
	f := newFakeEngine(t)
	log, logs := newLogger()
	p, err := New(Config{Client: f.client(t), Logger: log, SelfCandidates: []string{"deadbeef0000"}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, p)
	logs.WaitLine(t, waitTimeout, "own container not found on this Engine (tried [deadbeef0000])")
}

// Replays the recorded event stream against a changing Engine state.
func TestRecordedEvents(t *testing.T) {
	f := newFakeEngine(t)
	for _, id := range []string{id2, id3, id4, idOther} {
		f.setRunning(id, false)
	}
	log, _ := newLogger()
	p, err := New(Config{Client: f.client(t), Logger: log, SelfCandidates: []string{id1}})
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, p)
	r.wait("only rethinkdb-1", "172.18.0.2:29015/alpha")
	waitStream(t, f)

	ev := recordedEvents(t)
	find := func(action, id string) string {
		for _, l := range ev {
			if strings.Contains(l, `"Action":"`+action+`"`) && strings.Contains(l, id) {
				return l
			}
		}
		t.Fatalf("no recorded %s of %s", action, id)
		return ""
	}
	// rethinkdb-2 and -4 start; other-1 starts (not ours).
	for _, id := range []string{id2, id4, idOther} {
		f.setRunning(id, true)
	}
	f.emit(find("start", id2), find("start", idOther), find("start", id4))
	r.wait("after starts", "172.18.0.2:29015/alpha", "172.18.0.3:29016/alpha", "172.18.0.6:29015/alpha")

	// rethinkdb-2 stops: kill, die, disconnect, stop as recorded.
	f.setRunning(id2, false)
	var stopLines []string
	for _, l := range ev {
		if strings.Contains(l, id2) && (strings.Contains(l, `"kill"`) || strings.Contains(l, `"die"`) ||
			strings.Contains(l, `"disconnect"`) || strings.Contains(l, `"Action":"stop"`)) {
			stopLines = append(stopLines, l)
		}
	}
	f.emit(stopLines...)
	r.wait("after stop", "172.18.0.2:29015/alpha", "172.18.0.6:29015/alpha")

	// A replayed die of a container that runs again must not remove it.
	f.emit(find("die", id2))
	f.setRunning(id2, true)
	f.emit(find("start", id2))
	r.wait("after restart", "172.18.0.2:29015/alpha", "172.18.0.3:29016/alpha", "172.18.0.6:29015/alpha")
}

// The stream ends; meanwhile a container stops without any event
// delivered. The provider reconnects with since = the last event it handled
// and lists again: nothing is lost.
func TestStreamCutResyncs(t *testing.T) {
	f := newFakeEngine(t)
	f.setRunning(id4, false)
	log, logs := newLogger()
	p, err := New(Config{Client: f.client(t), Logger: log, Selector: []string{"io.rethinkdb.cluster=alpha"}, SelfCandidates: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, p)
	r.wait("initial", "172.18.0.2:29015/alpha", "172.18.0.3:29016/alpha")
	waitStream(t, f)
	first, err := parseSince(f.sinceOf(0))
	if err != nil || time.Since(first) < sinceOverlap-time.Second || time.Since(first) > sinceOverlap+time.Minute {
		t.Errorf("first since %q (%v): want about %v ago", f.sinceOf(0), err, sinceOverlap)
	}

	// rethinkdb-4 starts, with an event stamped now.
	var start map[string]any
	for _, l := range recordedEvents(t) {
		if strings.Contains(l, `"Action":"start"`) && strings.Contains(l, id4) {
			json.Unmarshal([]byte(l), &start)
		}
	}
	stamp := time.Now().UnixNano()
	start["timeNano"], start["time"] = stamp, stamp/1e9
	line, _ := json.Marshal(start)
	f.setRunning(id4, true)
	f.emit(string(line))
	r.wait("after the start event", "172.18.0.2:29015/alpha", "172.18.0.3:29016/alpha", "172.19.0.2:29015+172.18.0.6:29015/alpha")

	lists := f.lists()
	f.cutStreams()
	f.setRunning(id2, false) // no event for this one
	r.wait("after reconnect", "172.18.0.2:29015/alpha", "172.19.0.2:29015+172.18.0.6:29015/alpha")
	if f.streamCount() < 2 || f.lists() <= lists {
		t.Fatalf("streams %d, lists %d -> %d: want a new subscription and a new listing", f.streamCount(), lists, f.lists())
	}
	if got, want := f.sinceOf(1), fmt.Sprintf("%d.%09d", stamp/1e9, stamp%1e9); got != want {
		t.Errorf("since on reconnect = %q, want %q (the last event)", got, want)
	}
	if !strings.Contains(logs.String(), "Docker event stream ended") {
		t.Errorf("no log of the ended stream:\n%s", logs)
	}
}

func parseSince(s string) (time.Time, error) {
	sec, nsec, _ := strings.Cut(s, ".")
	a, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	b, err := strconv.ParseInt(nsec, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(a, b), nil
}

// The Engine is unreachable at first, then fails again while followed: the
// provider retries, never exits, and keeps up once it is back.
func TestEngineDown(t *testing.T) {
	f := newFakeEngine(t)
	f.down.Store(true)
	log, logs := newLogger()
	p, err := New(Config{Client: f.client(t), Logger: log, SelfCandidates: []string{id1}})
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, p)
	waitLogCount(t, logs, "cannot reach the Docker Engine; retrying", 2)
	f.down.Store(false)
	r.wait("up", "172.18.0.2:29015/alpha", "172.18.0.3:29016/alpha", "172.18.0.6:29015/alpha")

	// Down again: the stream breaks, reconnections fail for a while, the
	// last peers stay (a provider that cannot ask does not empty its group).
	f.down.Store(true)
	f.cutStreams()
	waitLogCount(t, logs, "listing containers failed", 2)
	if got := r.current(); len(got) != 3 {
		t.Errorf("peers while the Engine is down: %v", got)
	}
	f.setRunning(id2, false)
	f.down.Store(false)
	r.wait("back", "172.18.0.2:29015/alpha", "172.18.0.6:29015/alpha")
}

// The agent's own container joins another network: peers' addresses on it
// count from then on (network connect event of our own container).
func TestOwnNetworkConnect(t *testing.T) {
	f := newFakeEngine(t)
	log, _ := newLogger()
	p, err := New(Config{Client: f.client(t), Logger: log, SelfCandidates: []string{id1}})
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, p)
	r.wait("rec_default only", "172.18.0.2:29015/alpha", "172.18.0.3:29016/alpha", "172.18.0.6:29015/alpha")
	waitStream(t, f)

	// rec-rethinkdb-1 gets rec-rethinkdb-4's rec_backend endpoint too.
	f.mu.Lock()
	nets1 := f.inspect[id1]["NetworkSettings"].(map[string]any)["Networks"].(map[string]any)
	nets4 := f.inspect[id4]["NetworkSettings"].(map[string]any)["Networks"].(map[string]any)
	nets1["rec_backend"] = nets4["rec_backend"]
	f.mu.Unlock()
	var connect string
	for _, l := range recordedEvents(t) {
		if strings.Contains(l, `"Action":"connect"`) && strings.Contains(l, `"name":"rec_backend"`) {
			connect = strings.ReplaceAll(l, id4, id1)
		}
	}
	f.emit(connect)
	r.wait("rec_default and rec_backend", "172.18.0.2:29015/alpha", "172.18.0.3:29016/alpha", "172.19.0.2:29015+172.18.0.6:29015/alpha")
}
