package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// TestInitialPasswordFromConfigFile starts a server whose admin password
// comes from a --config-file (the safe way the help text recommends): the
// password works, a wrong one is refused with the recorded error, and the
// secret is not in server_status.process.argv, which every client can read.
func TestInitialPasswordFromConfigFile(t *testing.T) {
	t.Parallel()
	c := harness.New(t)
	const secret = "s3cret-from-file"
	s := c.StartServer(harness.ServerOptions{Name: "pw_1", InitialPassword: secret})
	ss := s.Session(t)

	rows := mustSystemTable(t, ss, "server_status")
	if len(rows) != 1 {
		t.Fatalf("server_status: %v", rows)
	}
	argv := fmt.Sprint(rows[0]["process"].(map[string]any)["argv"])
	if strings.Contains(argv, secret) {
		t.Errorf("the password is on the command line: %s", argv)
	}
	if !strings.Contains(argv, "--config-file") {
		t.Errorf("argv %s has no --config-file", argv)
	}

	// transcripts/driver-errors-and-auth.txt
	for _, tc := range []struct{ user, password, want string }{
		{"", "wrong", "rethinkdb: Wrong password"},
		{"nobody", secret, "rethinkdb: Unknown user"},
	} {
		sess, err := r.Connect(r.ConnectOpts{Address: s.DriverAddr(), Username: tc.user, Password: tc.password, Timeout: 10 * time.Second})
		if err == nil {
			sess.Close()
			t.Errorf("user %q, password %q: connected, want %q", tc.user, tc.password, tc.want)
		} else if err.Error() != tc.want {
			t.Errorf("user %q, password %q: error %q, want %q", tc.user, tc.password, err, tc.want)
		}
	}
}
