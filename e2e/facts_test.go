package e2e

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
)

// TestJoinUnreachable: a new server whose only --join peer does not answer
// stays at "Listening for intracluster connections" and never opens its
// driver port (logs/join-unreachable.log: still so after 6 s).
func TestJoinUnreachable(t *testing.T) {
	t.Parallel()
	c := harness.New(t)
	// A port that was free a moment ago: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()

	s := c.StartServer(harness.ServerOptions{Name: "jt_1", JoinAddrs: []string{dead}, NoWait: true})
	s.WaitLog(t, "Listening for intracluster connections on port "+strconv.Itoa(s.ClusterPort), harness.StartTimeout)
	harness.Consistently(t, 3*time.Second, func() (bool, string) {
		if out := s.Output(); strings.Contains(out, "Listening for client driver connections") {
			return false, "the driver port was opened:\n" + out
		}
		conn, err := net.DialTimeout("tcp", s.DriverAddr(), time.Second)
		if err == nil {
			conn.Close()
			return false, fmt.Sprintf("%s accepts connections", s.DriverAddr())
		}
		return true, ""
	})
}

// TestServerNameKeptOnRestart: --server-name is ignored once the data
// directory has a name, with the recorded warning (logs/s1.log).
func TestServerNameKeptOnRestart(t *testing.T) {
	t.Parallel()
	c := harness.New(t)
	s := c.StartServer(harness.ServerOptions{Name: "first"})
	id := s.ID
	s.Restart(harness.ServerOptions{Name: "second"})
	s.WaitLog(t, "WARNING: ignoring --server-name because this server already has a name.", harness.LogTimeout)
	if s.ServerName != "first" || s.ID != id {
		t.Errorf("after the restart the server is %q %s, want %q %s", s.ServerName, s.ID, "first", id)
	}
	names, err := serverNames(t, s.Session(t))
	if err != nil || len(names) != 1 || names[0] != "first" {
		t.Errorf("server_status names %v (%v), want [first]", names, err)
	}
}
