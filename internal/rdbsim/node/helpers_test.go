package node

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitFor = 15 * time.Second

// logBuf collects a node's log lines and lets tests wait for one.
type logBuf struct {
	mu    sync.Mutex
	lines []string
	ch    chan struct{}
}

func newLogBuf() *logBuf { return &logBuf{ch: make(chan struct{})} }

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.lines = append(l.lines, s)
	}
	close(l.ch)
	l.ch = make(chan struct{})
	return len(p), nil
}

func (l *logBuf) snapshot() ([]string, chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...), l.ch
}

func (l *logBuf) String() string {
	lines, _ := l.snapshot()
	return strings.Join(lines, "\n")
}

// index returns the position of the first line containing s, or -1.
func (l *logBuf) index(s string) int {
	lines, _ := l.snapshot()
	for i, x := range lines {
		if strings.Contains(x, s) {
			return i
		}
	}
	return -1
}

func (l *logBuf) wait(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		lines, ch := l.snapshot()
		for _, x := range lines {
			if strings.Contains(x, s) {
				return
			}
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("log line %q did not appear; log:\n%s", s, strings.Join(lines, "\n"))
		}
	}
}

// simNode is a running node in a test.
type simNode struct {
	*Node
	t      *testing.T
	log    *logBuf
	cancel context.CancelFunc
	done   chan error
	cfg    Config
}

func serverCfg(t *testing.T, dir, name string, join ...*simNode) Config {
	cfg := Config{
		Directory:   dir,
		ServerName:  name,
		Bind:        []string{"127.0.0.1"},
		CacheSizeMB: 256,
		Argv:        []string{"rethinkdb", "--server-name", name},
	}
	for _, j := range join {
		cfg.Join = append(cfg.Join, j.addr())
	}
	return cfg
}

func proxyCfg(join ...*simNode) Config {
	cfg := Config{Proxy: true, Bind: []string{"127.0.0.1"}, NoHTTPAdmin: true, Argv: []string{"rethinkdb", "proxy"}}
	for _, j := range join {
		cfg.Join = append(cfg.Join, j.addr())
	}
	return cfg
}

// start runs a node and stops it at the end of the test.
func start(t *testing.T, cfg Config) *simNode {
	t.Helper()
	lb := newLogBuf()
	cfg.Log = lb
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &simNode{Node: n, t: t, log: lb, cancel: cancel, done: make(chan error, 1), cfg: cfg}
	go func() { s.done <- n.Run(ctx) }()
	t.Cleanup(s.stop)
	select {
	case <-n.Listening():
	case err := <-s.done:
		s.done <- err
		t.Fatalf("node stopped early: %v\n%s", err, lb)
	case <-time.After(waitFor):
		t.Fatalf("node did not listen")
	}
	return s
}

// startReady starts a node and waits until it is ready.
func startReady(t *testing.T, cfg Config) *simNode {
	t.Helper()
	s := start(t, cfg)
	s.waitReady()
	return s
}

func (s *simNode) waitReady() {
	s.t.Helper()
	select {
	case <-s.Ready():
	case <-time.After(waitFor):
		s.t.Fatalf("node %s not ready; log:\n%s", s.ID(), s.log)
	}
}

func (s *simNode) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.ClusterPort()) }

// stop shuts the node down and waits for Run to return.
func (s *simNode) stop() {
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok && err != nil {
			s.t.Errorf("Run: %v", err)
		}
		if ok {
			close(s.done)
		}
	case <-time.After(waitFor):
		s.t.Errorf("node %s did not stop", s.ID())
	}
}

// until polls cond on every state change of the given nodes until it holds.
func until(t *testing.T, what string, cond func() bool, nodes ...*simNode) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		var chs []chan struct{}
		for _, n := range nodes {
			n.mu.Lock()
			chs = append(chs, n.changeCh)
			n.mu.Unlock()
		}
		if cond() {
			return
		}
		wake := make(chan struct{})
		stop := make(chan struct{})
		for _, ch := range chs {
			go func(ch chan struct{}) {
				select {
				case <-ch:
					select {
					case wake <- struct{}{}:
					case <-stop:
					}
				case <-stop:
				}
			}(ch)
		}
		select {
		case <-wake:
			close(stop)
		case <-deadline:
			close(stop)
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (s *simNode) rows(table string) []map[string]any {
	s.t.Helper()
	tb, err := s.Backend().Table(context.Background(), "rethinkdb", table, reql.TableOpts{})
	if err != nil {
		s.t.Fatalf("table %s: %v", table, err)
	}
	docs, err := tb.Scan(context.Background())
	if err != nil {
		s.t.Fatalf("scan %s: %v", table, err)
	}
	var out []map[string]any
	for _, d := range docs {
		out = append(out, d.(map[string]any))
	}
	return out
}

func (s *simNode) serverNames() []string {
	var names []string
	for _, r := range s.rows("server_config") {
		names = append(names, r["name"].(string))
	}
	return names
}

func (s *simNode) issueTypes() []string {
	var out []string
	for _, r := range s.rows("current_issues") {
		out = append(out, r["type"].(string))
	}
	return out
}

func (s *simNode) connectedTo(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[id] != nil
}

// meshed waits until every pair of nodes is connected.
func meshed(t *testing.T, nodes ...*simNode) {
	t.Helper()
	until(t, "full mesh", func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b && !a.connectedTo(b.ID()) {
					return false
				}
			}
		}
		return true
	}, nodes...)
}

func dir(t *testing.T, name string) string { return filepath.Join(t.TempDir(), name) }

func mustOK(t *testing.T, s reql.WriteSummary, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if s.Errors > 0 {
		t.Fatalf("write failed: %s", s.FirstError)
	}
}

// update returns a Modify function that merges fields into the row.
func update(fields map[string]any) func(any) (any, error) {
	return func(old any) (any, error) {
		if old == nil {
			return nil, nil
		}
		m := deepCopy(old).(map[string]any)
		for k, v := range fields {
			m[k] = v
		}
		return m, nil
	}
}

// waitDBs waits until s sees n databases.
func waitDBs(t *testing.T, s *simNode, n int) {
	t.Helper()
	until(t, fmt.Sprintf("%d databases", n), func() bool {
		dbs, _ := s.Backend().DBs(context.Background())
		return len(dbs) == n
	}, s)
}
