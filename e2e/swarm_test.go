package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
)

// TestSwarm deploys compose.yaml as a stack on a single-node Docker Swarm
// (made here and left again at the end), scales it to 3 replicas and waits
// for one cluster: the agents find each other through Docker's DNS
// (tasks.rethinkdb), the path across hosts, where overlay networks carry no
// multicast.
func TestSwarm(t *testing.T) {
	requireDocker(t)
	image := testImage(t)
	switch state := strings.TrimSpace(docker(t, "info", "--format", "{{.Swarm.LocalNodeState}}")); state {
	case "inactive":
		// swarm init makes docker_gwbridge, and leave keeps it.
		_, gwErr := exec.Command("docker", "network", "inspect", "docker_gwbridge").CombinedOutput()
		hadGW := gwErr == nil
		out, err := exec.Command("docker", "swarm", "init", "--advertise-addr", "127.0.0.1").CombinedOutput()
		if err != nil {
			t.Fatalf("docker swarm init: %v\n%s", err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("docker", "swarm", "leave", "--force").CombinedOutput(); err != nil {
				t.Errorf("docker swarm leave: %v\n%s", err, out)
			}
			if !hadGW {
				_ = exec.Command("docker", "network", "rm", "docker_gwbridge").Run()
			}
		})
	case "active":
		t.Log("this engine is already a swarm node: deploying there, leaving it as it is")
	default:
		t.Skipf("SKIPPED: swarm state %q", state)
	}

	stackName := fmt.Sprintf("rdbswarm%d", os.Getpid()%10000)
	httpPort, driverPort := freeTCPPort(t), freeTCPPort(t)
	env := append(os.Environ(),
		"RETHINKDB_IMAGE="+image,
		"RETHINKDB_DNS_NAME=tasks.rethinkdb",
		"RETHINKDB_HTTP_PUBLISH="+strconv.Itoa(httpPort),
		"RETHINKDB_DRIVER_PUBLISH="+strconv.Itoa(driverPort),
		"RETHINKDB_AGENT_LOG_LEVEL=debug",
	)
	dockerEnv := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "docker", args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	label := "label=com.docker.stack.namespace=" + stackName
	// Registered after the swarm's cleanup, so it runs before it.
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := dockerEnv("service", "logs", "--raw", "--tail", "100", stackName+"_rethinkdb")
			t.Logf("==== service logs:\n%s", out)
			out, _ = dockerEnv("service", "ps", "--no-trunc", stackName+"_rethinkdb")
			t.Logf("==== service ps:\n%s", out)
		}
		_, _ = dockerEnv("stack", "rm", stackName)
		// The stack is gone when its containers and network are.
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			c, _ := dockerEnv("ps", "-aq", "--filter", label)
			n, _ := dockerEnv("network", "ls", "-q", "--filter", label)
			if strings.TrimSpace(c) == "" && strings.TrimSpace(n) == "" {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if out, err := dockerEnv("volume", "rm", stackName+"_rethinkdb-data"); err != nil && !strings.Contains(out, "No such volume") {
			t.Errorf("docker volume rm: %v\n%s", err, out)
		}
	})

	start := time.Now()
	if out, err := dockerEnv("stack", "deploy", "-c", filepath.Join(repoRoot(t), "compose.yaml"), stackName); err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}
	if out, err := dockerEnv("service", "scale", "--detach", stackName+"_rethinkdb=3"); err != nil {
		t.Fatalf("docker service scale: %v\n%s", err, out)
	}
	want := []string{stackName + "_rethinkdb_1", stackName + "_rethinkdb_2", stackName + "_rethinkdb_3"}
	// Each task's own view, from its agent (`status --json` in the task):
	// the overlay network is not reachable from here, and the routing mesh
	// on 127.0.0.1 is not dependable on every engine. No db_name_collision
	// issue means no second `test` database.
	harness.Eventually(t, convergeTimeout, func() (bool, string) {
		ids, err := dockerEnv("ps", "-q", "--filter", label)
		if err != nil {
			return false, err.Error()
		}
		tasks := strings.Fields(ids)
		if len(tasks) != 3 {
			return false, fmt.Sprintf("%d task containers", len(tasks))
		}
		for _, task := range tasks {
			out, err := dockerEnv("exec", task, "rethinkdb-agent", "status", "--json", "--recent", "0")
			if err != nil {
				return false, fmt.Sprintf("%s: status: %v %s", task, err, out)
			}
			var doc struct {
				Servers []struct{ Name string }
				Issues  []struct{ Type string }
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				return false, fmt.Sprintf("%s: %v", task, err)
			}
			var names []string
			for _, sv := range doc.Servers {
				names = append(names, sv.Name)
			}
			slices.Sort(names)
			if !slices.Equal(names, want) || len(doc.Issues) != 0 {
				return false, fmt.Sprintf("%s sees servers %v, issues %v", task, names, doc.Issues)
			}
		}
		return true, ""
	})
	t.Logf("one cluster of 3 on swarm after %s", time.Since(start).Round(time.Second))
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
