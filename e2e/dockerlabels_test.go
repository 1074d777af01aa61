package e2e

// Agents that find each other through Docker labels with no configuration
// beyond --discovery docker (and likewise through DNS and mDNS): each container runs the test image (the agent
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
// know nothing but their discovery provider become one cluster: one `test`
// database, no issue left. Through labels (--discovery docker, the Engine
// socket mounted read-only, the compose selector found from the agent's own
// container), and through Docker's embedded DNS (--discovery dns on the
// name every replica carries as a network alias, as compose does for a
// service), and through mDNS over the network's real multicast.
func TestDockerLabelsAgentsMerge(t *testing.T) {
	if testing.Short() {
		t.Skip("!!! SKIPPED: needs a Docker Engine (-short)")
	}
	if out, err := dlRun(t, "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("!!! SKIPPED: no Docker Engine answers (%v): %s", err, out)
	}
	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	} else if h != "" {
		t.Skipf("!!! SKIPPED: DOCKER_HOST=%s is not a unix socket to mount into the containers", h)
	}
	b := make([]byte, 3)
	rand.Read(b)
	run := fmt.Sprintf("rdbadl%d%s", os.Getpid()%10000, hex.EncodeToString(b))
	image := "rethinkdb-agent-dltest:" + run
	dlImage(t, image)

	for _, mode := range []struct {
		name string
		args []string
	}{
		{"labels", []string{"-v", sock + ":/var/run/docker.sock:ro", "-e", "RETHINKDB_AGENT_DISCOVERY=docker"}},
		{"dns", []string{"-e", "RETHINKDB_AGENT_DISCOVERY=dns"}}, // and DNS_NAME=<service>
		// Multicast reaches every container of the network, the other
		// service's too: the cluster fence (CLUSTER=<service>) keeps it out.
		{"mdns", []string{"-e", "RETHINKDB_AGENT_DISCOVERY=mdns"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			project := run + mode.name
			dlMust(t, "network", "create", project)
			t.Cleanup(func() { dlRun(t, "network", "rm", project) })
			var names []string
			start := func(svc string, n int) string {
				t.Helper()
				name := fmt.Sprintf("%s-%s-%d", project, svc, n)
				t.Cleanup(func() {
					if t.Failed() {
						out, _ := dlRun(t, "logs", "--tail", "150", name)
						t.Logf("==== logs of %s:\n%s", name, out)
					}
					dlRun(t, "rm", "-f", "-v", name)
				})
				args := []string{"run", "-d", "--init", "--name", name, "--network", project, "--network-alias", svc,
					"--label", "com.docker.compose.project=" + project,
					"--label", "com.docker.compose.service=" + svc,
					"--label", fmt.Sprintf("com.docker.compose.container-number=%d", n),
					"-e", "RETHINKDB_AGENT_LOG_LEVEL=debug", "-e", "RETHINKDB_AGENT_DNS_NAME=" + svc}
				if mode.name == "mdns" {
					args = append(args, "-e", "RETHINKDB_AGENT_CLUSTER="+svc)
				}
				args = append(append(args, mode.args...), image)
				dlMust(t, args...)
				return name
			}
			// A container of another service of the same project, with an
			// agent of its own: never a peer of the rethinkdb service.
			web := start("web", 1)

			t0 := time.Now()
			names = append(names, start("rethinkdb", 1), start("rethinkdb", 2))
			dlWaitOneCluster(t, names)
			t.Logf("%s: two nodes are one cluster", time.Since(t0).Round(time.Second))
			names = append(names, start("rethinkdb", 3))
			dlWaitOneCluster(t, names)
			t.Logf("%s: three nodes are one cluster", time.Since(t0).Round(time.Second))

			// The other service's node stayed alone all along.
			harness.Consistently(t, 3*time.Second, func() (bool, string) {
				n, err := dlServerCount(t, web)
				return err == nil && n == 1, fmt.Sprintf("%s sees %d servers (%v), want itself only", web, n, err)
			})
			dlWaitOneCluster(t, names)

			if mode.name == "labels" {
				// The compose selector was found from the agent's own container.
				logs := dlMust(t, "logs", names[0])
				want := `selector="com.docker.compose.project=` + project + `,com.docker.compose.service=rethinkdb"`
				if !strings.Contains(logs, "following Docker containers") || !strings.Contains(logs, want) {
					t.Errorf("agent log lacks %q", want)
				}
			}
		})
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

// dlServerCount is the number of servers a container's node sees.
func dlServerCount(t *testing.T, name string) (int, error) {
	ip, err := dlRun(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)
	if err != nil {
		return 0, err
	}
	s, err := r.Connect(r.ConnectOpts{Address: strings.TrimSpace(ip) + ":28015", Timeout: 5 * time.Second, ReadTimeout: queryTimeout})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	rows, err := systemTable(t, s, "server_status")
	return len(rows), err
}
