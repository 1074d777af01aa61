package e2e

// Agents that find each other through Docker labels with no configuration
// beyond --discovery docker: each container runs the test image (the agent
// and rethinkdb-sim as `rethinkdb`, FROM scratch, built here) with the
// labels compose gives its containers, and reads the Engine through the
// socket mounted read-only. Identifiers here start with dl, to stay clear of
// the other scenarios of this package.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	r "gopkg.in/rethinkdb/rethinkdb-go.v6"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
)

// dlRun is a docker command line for the labels scenario.
func dlRun(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	return string(out), err
}

func dlMust(t testing.TB, args ...string) string {
	t.Helper()
	out, err := dlRun(t, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// dlImage builds the test image (docker/test.Dockerfile) under a tag of
// this run, removed at cleanup.
func dlImage(t *testing.T, tag string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	dir := t.TempDir()
	for bin, pkg := range map[string]string{"rethinkdb-agent": "./cmd/rethinkdb-agent", "rethinkdb": "./cmd/rethinkdb-sim"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, bin), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	t.Cleanup(func() { dlRun(t, "rmi", "-f", tag) })
	dlMust(t, "build", "-q", "-f", filepath.Join(root, "docker", "test.Dockerfile"), "-t", tag, dir)
}

// TestDockerLabelsAgentsMerge: two, then three lone nodes with agents that
// know nothing but --discovery docker become one cluster: one `test`
// database, no issue left.
func TestDockerLabelsAgentsMerge(t *testing.T) {
	if testing.Short() {
		t.Skip("!!! SKIPPED: needs a Docker Engine (-short)")
	}
	if out, err := dlRun(t, "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("!!! SKIPPED: no Docker Engine answers (%v): %s", err, out)
	}
	b := make([]byte, 3)
	rand.Read(b)
	run := fmt.Sprintf("rdbadl%d%s", os.Getpid()%10000, hex.EncodeToString(b))
	image := "rethinkdb-agent-dltest:" + run
	dlImage(t, image)
	dlMust(t, "network", "create", run)
	t.Cleanup(func() { dlRun(t, "network", "rm", run) })

	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	} else if h != "" {
		t.Skipf("!!! SKIPPED: DOCKER_HOST=%s is not a unix socket to mount into the containers", h)
	}
	var names []string
	start := func(n int) {
		t.Helper()
		name := fmt.Sprintf("%s-rethinkdb-%d", run, n)
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := dlRun(t, "logs", "--tail", "150", name)
				t.Logf("==== logs of %s:\n%s", name, out)
			}
			dlRun(t, "rm", "-f", "-v", name)
		})
		dlMust(t, "run", "-d", "--init", "--name", name, "--network", run,
			"--label", "com.docker.compose.project="+run,
			"--label", "com.docker.compose.service=rethinkdb",
			"--label", fmt.Sprintf("com.docker.compose.container-number=%d", n),
			"-v", sock+":/var/run/docker.sock:ro",
			"-e", "RETHINKDB_AGENT_DISCOVERY=docker",
			"-e", "RETHINKDB_AGENT_LOG_LEVEL=debug",
			image)
		names = append(names, name)
	}
	// A container of another service in the same project: never a peer.
	other := run + "-web-1"
	t.Cleanup(func() { dlRun(t, "rm", "-f", "-v", other) })
	dlMust(t, "run", "-d", "--init", "--name", other, "--network", run,
		"--label", "com.docker.compose.project="+run, "--label", "com.docker.compose.service=web", image)

	t0 := time.Now()
	start(1)
	start(2)
	dlWaitOneCluster(t, names)
	t.Logf("%s: two nodes are one cluster", time.Since(t0).Round(time.Second))
	start(3)
	dlWaitOneCluster(t, names)
	t.Logf("%s: three nodes are one cluster", time.Since(t0).Round(time.Second))

	// The agents used the labels, with the compose selector found from
	// their own container.
	logs := dlMust(t, "logs", names[0])
	want := `selector="com.docker.compose.project=` + run + `,com.docker.compose.service=rethinkdb"`
	if !strings.Contains(logs, "following Docker containers") || !strings.Contains(logs, want) {
		t.Errorf("agent log lacks %q", want)
	}
}

// dlWaitOneCluster waits until every container's node sees every other one,
// one `test` database and no issue.
func dlWaitOneCluster(t *testing.T, names []string) {
	t.Helper()
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		for _, name := range names {
			ip, err := dlRun(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", name, err)
			}
			s, err := r.Connect(r.ConnectOpts{Address: strings.TrimSpace(ip) + ":28015", Timeout: 5 * time.Second, ReadTimeout: queryTimeout})
			if err != nil {
				return false, fmt.Sprintf("%s: %v", name, err)
			}
			servers, err1 := systemTable(t, s, "server_status")
			dbs, err2 := systemTable(t, s, "db_config")
			issues, err3 := systemTable(t, s, "current_issues")
			s.Close()
			if err := dlFirstErr(err1, err2, err3); err != nil {
				return false, fmt.Sprintf("%s: %v", name, err)
			}
			tests := 0
			for _, db := range dbs {
				if db["name"] == "test" {
					tests++
				}
			}
			if len(servers) != len(names) || tests != 1 || len(issues) != 0 {
				return false, fmt.Sprintf("%s sees %d servers, %d test databases, %d issues", name, len(servers), tests, len(issues))
			}
		}
		return true, ""
	})
}

func dlFirstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
