package e2e

// The compose stack of the README (compose.yaml at the repository root) on
// this machine's Docker Engine, with the test image: FROM scratch, the agent
// and rethinkdb-sim as `rethinkdb`, built here (docker/test.Dockerfile).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// convergeTimeout bounds how long a compose cluster may take to become one.
const convergeTimeout = 120 * time.Second

var (
	imageOnce sync.Once
	imageName string
	imageErr  error
)

// repoRoot is the module root (the parent of e2e/).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate compose_test.go")
	}
	return filepath.Dir(filepath.Dir(file))
}

// requireDocker skips loudly when no Docker Engine answers, and returns the
// compose command (`docker compose` or `docker-compose`).
func requireDocker(t *testing.T) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPED: compose tests need a Docker Engine (-short)")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: no Docker Engine answers (%v): %s", err, out)
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	t.Skip("SKIPPED: neither `docker compose` nor docker-compose is installed")
	return nil
}

// testImage builds the test image once per run from this checkout.
func testImage(t *testing.T) string {
	t.Helper()
	imageOnce.Do(func() {
		root := repoRoot(t)
		dir, err := os.MkdirTemp("", "rethinkdb-agent-image")
		if err != nil {
			imageErr = err
			return
		}
		defer os.RemoveAll(dir)
		for bin, pkg := range map[string]string{"rethinkdb-agent": "./cmd/rethinkdb-agent", "rethinkdb": "./cmd/rethinkdb-sim"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, bin), pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				imageErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
		imageName = "rethinkdb-agent-test:e2e"
		cmd := exec.Command("docker", "build", "-q", "-f", filepath.Join(root, "docker", "test.Dockerfile"), "-t", imageName, dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("docker build: %v\n%s", err, out)
			return
		}
		// Each build leaves the previous one dangling: remove those (ours only).
		_ = exec.Command("docker", "image", "prune", "-f", "--filter", "label=io.github.rethinkdb-agent.test-image").Run()
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageName
}

// stack is one compose project of compose.yaml.
type stack struct {
	t        *testing.T
	compose  []string
	project  string
	env      []string
	files    []string // compose files after compose.yaml
	password string   // the admin password the nodes get, if any
}

func newStack(t *testing.T, project string) *stack {
	t.Helper()
	compose := requireDocker(t)
	s := &stack{t: t, compose: compose, project: fmt.Sprintf("%s%d", project, os.Getpid()%10000)}
	s.env = append(os.Environ(),
		"RETHINKDB_IMAGE="+testImage(t),
		"RETHINKDB_HTTP_PUBLISH=127.0.0.1:", // free host ports: tests may run beside a user's stack
		"RETHINKDB_DRIVER_PUBLISH=127.0.0.1:",
		"RETHINKDB_AGENT_LOG_LEVEL=debug",
	)
	_ = s.down() // leftovers of an interrupted run
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := s.runFiles(nil, "logs", "--no-color", "--tail", "200")
			t.Logf("==== compose logs of %s:\n%s", s.project, out)
		}
		if err := s.down(); err != nil {
			t.Error(err)
		}
		label := "label=com.docker.compose.project=" + s.project
		if left := strings.TrimSpace(docker(t, "ps", "-aq", "--filter", label)); left != "" {
			t.Errorf("containers of %s left after down: %s", s.project, left)
		}
	})
	return s
}

func (s *stack) run(args ...string) (string, error) {
	return s.runFiles(s.files, args...)
}

func (s *stack) runFiles(files []string, args ...string) (string, error) {
	full := append(slices.Clone(s.compose[1:]), "-p", s.project, "-f", filepath.Join(repoRoot(s.t), "compose.yaml"))
	for _, f := range files {
		full = append(full, "-f", f)
	}
	full = append(full, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.compose[0], full...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *stack) must(args ...string) string {
	s.t.Helper()
	out, err := s.run(args...)
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", strings.Join(s.compose, " "), strings.Join(args, " "), err, out)
	}
	return out
}

// down removes the project. It reads compose.yaml only: override files may
// live in a t.TempDir that is already gone when cleanups run.
func (s *stack) down() error {
	out, err := s.runFiles(nil, "down", "-v", "--remove-orphans", "-t", "10")
	if err != nil {
		return fmt.Errorf("%s down: %v\n%s", strings.Join(s.compose, " "), err, out)
	}
	return nil
}

// containers are the names of the service's containers, by container number.
func (s *stack) containers() []string {
	s.t.Helper()
	out := docker(s.t, "ps", "-a", "--filter", "label=com.docker.compose.project="+s.project,
		"--filter", "label=com.docker.compose.service=rethinkdb",
		"--format", `{{.Label "com.docker.compose.container-number"}} {{.Names}}`)
	type c struct {
		n    int
		name string
	}
	var cs []c
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		num, name, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(num)
		cs = append(cs, c{n, name})
	}
	slices.SortFunc(cs, func(a, b c) int { return a.n - b.n })
	var names []string
	for _, x := range cs {
		names = append(names, x.name)
	}
	return names
}

func docker(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// driverAddr is the published host address of a container's driver port.
func driverAddr(t testing.TB, container string) (string, error) {
	out, err := exec.Command("docker", "port", container, "28015/tcp").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("docker port %s: %v: %s", container, err, out)
	}
	addr := strings.TrimSpace(strings.Split(strings.TrimSpace(string(out)), "\n")[0])
	return strings.Replace(addr, "0.0.0.0:", "127.0.0.1:", 1), nil
}

// clusterState is what one node sees of its cluster.
type clusterState struct {
	servers map[string]string // name -> id
	tests   int               // databases named test
	issues  []string          // current_issues types
}

func (c clusterState) String() string {
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range c.servers {
			if !yield(n) {
				return
			}
		}
	})
	return fmt.Sprintf("servers %v, %d test databases, issues %v", names, c.tests, c.issues)
}

func observe(t testing.TB, addr string) (clusterState, error) { return observeAs(t, addr, "") }

func observeAs(t testing.TB, addr, password string) (clusterState, error) {
	var st clusterState
	s, err := r.Connect(r.ConnectOpts{Address: addr, Password: password, Timeout: 5 * time.Second, ReadTimeout: queryTimeout})
	if err != nil {
		return st, err
	}
	defer s.Close()
	rows, err := systemTable(t, s, "server_status")
	if err != nil {
		return st, err
	}
	st.servers = map[string]string{}
	for _, row := range rows {
		name, _ := row["name"].(string)
		id, _ := row["id"].(string)
		st.servers[name] = id
	}
	dbs, err := systemTable(t, s, "db_config")
	if err != nil {
		return st, err
	}
	for _, db := range dbs {
		if db["name"] == "test" {
			st.tests++
		}
	}
	issues, err := systemTable(t, s, "current_issues")
	if err != nil {
		return st, err
	}
	for _, is := range issues {
		typ, _ := is["type"].(string)
		st.issues = append(st.issues, typ)
	}
	return st, nil
}

// waitOneCluster waits until every running container sees the same n
// servers, one `test` database and no issue; it returns the server ids.
func (s *stack) waitOneCluster(n int) map[string]string {
	s.t.Helper()
	var ids map[string]string
	harness.Eventually(s.t, convergeTimeout, func() (bool, string) {
		cs := s.containers()
		if len(cs) != n {
			return false, fmt.Sprintf("%d containers, want %d", len(cs), n)
		}
		ids = nil
		for _, c := range cs {
			addr, err := driverAddr(s.t, c)
			if err != nil {
				return false, err.Error()
			}
			st, err := observeAs(s.t, addr, s.password)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", c, err)
			}
			if len(st.servers) != n || st.tests != 1 || len(st.issues) != 0 {
				return false, fmt.Sprintf("%s sees %s", c, st)
			}
			if _, ok := st.servers[sanitized(c)]; !ok {
				return false, fmt.Sprintf("%s: no server named %s in %s", c, sanitized(c), st)
			}
			if ids != nil && fmt.Sprint(ids) != fmt.Sprint(st.servers) {
				return false, fmt.Sprintf("%s sees %v, another node %v", c, st.servers, ids)
			}
			ids = st.servers
		}
		return true, ""
	})
	return ids
}

// sanitized is the server name exec derives from a compose container name.
func sanitized(container string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, container)
}

// TestCompose walks the README's stack through its life: scale to 3, to 5,
// restart one container, recreate one with its volume, stop one (SIGTERM,
// exit code) and take everything down. One project, steps in order: each
// builds on the last, and a compose cluster takes a while to form.
func TestCompose(t *testing.T) {
	s := newStack(t, "rdbatest")
	start := time.Now()
	step := func(name string) {
		t.Logf("%s: %s", time.Since(start).Round(time.Second), name)
	}

	step("1. up --scale rethinkdb=3: one cluster of 3, test once, no issues")
	s.must("up", "-d", "--scale", "rethinkdb=3")
	s.waitOneCluster(3)

	step("2. --scale rethinkdb=5: one cluster of 5")
	s.must("up", "-d", "--scale", "rethinkdb=5")
	ids := s.waitOneCluster(5)

	step("3. restart of one container: back in the cluster")
	cs := s.containers()
	docker(t, "restart", "-t", "10", cs[1])
	if got := s.waitOneCluster(5); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("after restart: servers %v, want %v", got, ids)
	}

	step("4. recreate one container, volume kept: back in with the same server id")
	last := cs[len(cs)-1]
	oldID := strings.TrimSpace(docker(t, "inspect", "-f", "{{.Id}}", last))
	docker(t, "stop", "-t", "10", last)
	docker(t, "rm", last)
	// Compose numbers a new container after the highest one left, so the
	// recreated container gets the removed one's number, name and data dir.
	s.must("up", "-d", "--scale", "rethinkdb=5")
	if newID := strings.TrimSpace(docker(t, "inspect", "-f", "{{.Id}}", last)); newID == oldID {
		t.Fatalf("%s was not recreated", last)
	}
	if got := s.waitOneCluster(5); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("after recreation: servers %v, want %v (same ids)", got, ids)
	}

	step("4b. up --force-recreate: every container recreated, the same server ids")
	before := strings.Fields(docker(t, append([]string{"inspect", "-f", "{{.Id}}"}, cs...)...))
	s.must("up", "-d", "--force-recreate", "--scale", "rethinkdb=5")
	after := strings.Fields(docker(t, append([]string{"inspect", "-f", "{{.Id}}"}, cs...)...))
	for i := range before {
		if i < len(after) && before[i] == after[i] {
			t.Fatalf("%s was not recreated", cs[i])
		}
	}
	if got := s.waitOneCluster(5); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("after up --force-recreate: servers %v, want %v (same ids)", got, ids)
	}

	step("5. docker stop: SIGTERM reaches rethinkdb, its exit code is the container's")
	docker(t, "stop", "-t", "20", cs[0])
	if code := strings.TrimSpace(docker(t, "inspect", "-f", "{{.State.ExitCode}}", cs[0])); code != "0" {
		t.Errorf("exit code after docker stop: %s, want rethinkdb's 0", code)
	}
	logs := docker(t, "logs", cs[0])
	if !strings.Contains(logs, "Server got SIGTERM") {
		t.Errorf("rethinkdb did not log SIGTERM:\n%s", logs)
	}
	// A failing rethinkdb: the container exits with rethinkdb's own code,
	// the recorded one (the image runs rethinkdb-sim even when
	// RETHINKDB_BIN names a real server, so that is what to compare with).
	_, want := recording(t, "unknown-option.txt")
	out, err := exec.Command("docker", "run", "--rm", "--init", testImage(t), "rethinkdb", "--bogus").CombinedOutput()
	got := 0
	if ee, ok := err.(*exec.ExitError); ok {
		got = ee.ExitCode()
	}
	if want == 0 || got != want {
		t.Errorf("exit code of a container whose rethinkdb fails: %d, want rethinkdb's %d\n%s", got, want, out)
	}

	step("6. down -v: nothing left behind")
	s.must("down", "-v", "-t", "10")
	label := "label=com.docker.compose.project=" + s.project
	for _, kind := range [][]string{{"ps", "-a"}, {"volume", "ls"}, {"network", "ls"}} {
		args := append(slices.Clone(kind), "-q", "--filter", label)
		if left := strings.TrimSpace(docker(t, args...)); left != "" {
			t.Errorf("docker %s after down -v: %s", strings.Join(kind, " "), left)
		}
	}
	step("done")
}

// TestComposePassword gives the stack an admin password as a Docker secret
// (the override of docs/docker.md): the cluster forms with it, and no
// server shows it in server_status.process.argv.
func TestComposePassword(t *testing.T) {
	s := newStack(t, "rdbapw")
	dir := t.TempDir()
	const password = "pw-Zq81-never-on-argv"
	pwFile := filepath.Join(dir, "rethinkdb_password.txt")
	override := filepath.Join(dir, "compose.override.yaml")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(override, []byte(`services:
  rethinkdb:
    environment:
      RETHINKDB_AGENT_PASSWORD_FILE: /run/secrets/rethinkdb_password
    secrets: [rethinkdb_password]
secrets:
  rethinkdb_password:
    file: `+pwFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.files, s.password = []string{override}, password
	s.must("up", "-d", "--scale", "rethinkdb=3")
	s.waitOneCluster(3)

	addr, err := driverAddr(t, s.containers()[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := observe(t, addr); err == nil || !strings.Contains(err.Error(), "Wrong password") {
		t.Errorf("connecting without the password: %v, want Wrong password", err)
	}
	sess, err := r.Connect(r.ConnectOpts{Address: addr, Password: password, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for _, row := range mustSystemTable(t, sess, "server_status") {
		process, _ := row["process"].(map[string]any)
		argv := fmt.Sprint(process["argv"])
		if strings.Contains(argv, password) || !strings.Contains(argv, "--config-file") {
			t.Errorf("server %v argv %s: want --config-file and no password", row["name"], argv)
		}
	}
}
