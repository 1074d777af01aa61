package static

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParsePeer(t *testing.T) {
	tests := []struct {
		in        string
		host      string
		port      int
		wantError string
	}{
		{in: "10.0.0.1", host: "10.0.0.1", port: 29015},
		{in: "10.0.0.1:4000", host: "10.0.0.1", port: 4000},
		{in: "node-a", host: "node-a", port: 29015},
		{in: "rethinkdb_1.example.com:29016", host: "rethinkdb_1.example.com", port: 29016},
		{in: "::1", host: "::1", port: 29015},
		{in: "[fd00::1]", host: "fd00::1", port: 29015},
		{in: "[fd00::1]:4000", host: "fd00::1", port: 4000},
		{in: " 10.0.0.1 ", host: "10.0.0.1", port: 29015},
		{in: "", wantError: "empty"},
		{in: "10.0.0.1:0", wantError: `bad port "0"`},
		{in: "10.0.0.1:http", wantError: `bad port "http"`},
		{in: "10.0.0.1:70000", wantError: `bad port "70000"`},
		{in: ":29015", wantError: "empty host"},
		{in: "tcp://10.0.0.1", wantError: "not a URL"},
		{in: "a b", wantError: "neither an IP address nor a host name"},
		{in: "[node]:1", wantError: "not an IPv6"},
		{in: "[zz]", wantError: "not an IPv6"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePeer(tc.in)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("err = %v, want %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := discovery.Peer{Addrs: []string{tc.host}, Port: tc.port, Source: Name}
			if !reflect.DeepEqual(p, want) {
				t.Errorf("got %+v, want %+v", p, want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "peers")
	os.WriteFile(bad, []byte("# ok\n10.0.0.1\n\nnot valid!\n"), 0o644)
	tests := []struct {
		name  string
		peers []string
		file  string
		want  string
	}{
		{"bad flag", []string{"10.0.0.1", "10.0.0.2:x"}, "", `--peer "10.0.0.2:x"`},
		{"missing file", nil, filepath.Join(dir, "nope"), filepath.Join(dir, "nope")},
		{"bad line", nil, bad, bad + `:4: "not valid!"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.peers, tc.file, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// run starts p and returns a function that waits for groups matching ok.
func run(t *testing.T, p *Provider) func(desc string, ok func(flags, file []string) bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan []discovery.Group)
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx, up) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return")
		}
	})
	return func(desc string, ok func(flags, file []string) bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case gs := <-up:
				byGroup := map[string][]string{}
				for _, g := range gs {
					for _, p := range g.Peers {
						byGroup[g.Source] = append(byGroup[g.Source], p.Endpoints()...)
					}
				}
				if ok(byGroup[SourceFlags], byGroup[SourceFile]) {
					return
				}
			case <-deadline:
				t.Fatalf("timed out waiting for %s", desc)
			}
		}
	}
}

func eq(a []string, b ...string) bool { return reflect.DeepEqual(a, b) || len(a) == 0 && len(b) == 0 }

// writeAtomic writes via a temporary file and rename, as config tools do.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileWatch(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "peers")
	if err := os.WriteFile(file, []byte("# cluster A\n10.0.0.1\nnode-b:4000 # trailing comment\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	p, err := New([]string{"10.0.0.9"}, file, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	wait := run(t, p)
	wait("initial", func(flags, f []string) bool {
		return eq(flags, "10.0.0.9:29015") && eq(f, "10.0.0.1:29015", "node-b:4000")
	})

	// In-place edit.
	if err := os.WriteFile(file, []byte("10.0.0.1\n10.0.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait("in-place edit", func(flags, f []string) bool { return eq(f, "10.0.0.1:29015", "10.0.0.2:29015") })

	// Atomic rename.
	writeAtomic(t, file, "10.0.0.3\n")
	wait("rename", func(flags, f []string) bool { return eq(f, "10.0.0.3:29015") && eq(flags, "10.0.0.9:29015") })

	// A bad line: logged with file:line, last good peers kept; then a fix.
	writeAtomic(t, file, "10.0.0.4\nbad host\n")
	logs.WaitLine(t, 5*time.Second, file+`:2: \"bad host\"`)
	writeAtomic(t, file, "10.0.0.5\n")
	// The first update after the bad file must be the fix, never a drop.
	wait("fix", func(flags, f []string) bool {
		if !eq(f, "10.0.0.5:29015") {
			t.Errorf("got %v after a bad file, want the fixed peers", f)
		}
		return true
	})

	// Emptying the file removes the file's peers.
	writeAtomic(t, file, "# none\n")
	wait("empty", func(flags, f []string) bool { return len(f) == 0 && eq(flags, "10.0.0.9:29015") })
}

// Kubernetes mounts a ConfigMap as dir/peers -> ..data/peers with
// ..data -> ..<timestamp>, and updates it by swapping ..data.
func TestConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mk := func(version, content string) {
		d := filepath.Join(dir, version)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "peers"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("..2026_11_26_v1", "10.0.0.1\n")
	if err := os.Symlink("..2026_11_26_v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "peers")
	if err := os.Symlink("..data/peers", file); err != nil {
		t.Fatal(err)
	}
	p, err := New(nil, file, nil)
	if err != nil {
		t.Fatal(err)
	}
	wait := run(t, p)
	wait("initial", func(_, f []string) bool { return eq(f, "10.0.0.1:29015") })

	mk("..2026_11_26_v2", "10.0.0.2\n10.0.0.3:4000\n")
	if err := os.Symlink("..2026_11_26_v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "..2026_11_26_v1"))
	wait("swap", func(_, f []string) bool { return eq(f, "10.0.0.2:29015", "10.0.0.3:4000") })
}

func TestFlagsOnly(t *testing.T) {
	p, err := New([]string{"a", "b:1"}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	wait := run(t, p)
	wait("flags", func(flags, f []string) bool { return eq(flags, "a:29015", "b:1") && f == nil })
}

// With the real Manager: static peers come out merged.
func TestWithManager(t *testing.T) {
	p, err := New([]string{"10.0.0.1", "10.0.0.1:29015"}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := discovery.NewManager(nil, p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case ps := <-m.Updates():
		want := []discovery.Peer{{Addrs: []string{"10.0.0.1"}, Port: 29015, Source: "static"}}
		if !reflect.DeepEqual(ps, want) {
			t.Errorf("peers = %+v", ps)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no update")
	}
}
