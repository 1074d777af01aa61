package e2e

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
)

// recording returns a recorded output of the real server and its exit code
// (the "exit=N" line the recorder appended, 0 when there is none).
func recording(t *testing.T, name string) (string, int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "rethinkdb-2.4.4", "cli", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if i := strings.LastIndex(s, "exit="); i >= 0 {
		code := 0
		if strings.TrimSpace(s[i+len("exit="):]) != "0" {
			code = 1
		}
		return s[:i], code
	}
	return s, 0
}

// absentLoopback is a loopback address configured on no interface here.
func absentLoopback(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"127.0.0.11", "127.0.0.211", "127.1.2.3"} {
		found := false
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(net.ParseIP(c)) {
				found = true
			}
		}
		if !found {
			return c
		}
	}
	t.Skip("every candidate loopback address is configured on this machine")
	return ""
}

// TestCommandLineConformance runs the binary with the command lines whose
// output was recorded from the real server, and compares exit code and text.
// cli/serve-help.txt is not used: the command that produced it is not
// recorded, and it equals help.txt, while rethinkdb 2.4.4's source prints
// another text for `help serve`.
func TestCommandLineConformance(t *testing.T) {
	t.Parallel()
	bin := harness.Binary(t)
	unknown, _ := recording(t, "unknown-option.txt")
	noJoin, _ := recording(t, "proxy-no-join.txt")
	help, _ := recording(t, "help.txt")
	proxyHelp, _ := recording(t, "proxy-help.txt")
	createHelp, _ := recording(t, "create-help.txt")
	proxyNameLog, _ := os.ReadFile(filepath.Join("testdata", "rethinkdb-2.4.4", "logs", "proxy_try_with_server_name.log"))
	s1Log, _ := os.ReadFile(filepath.Join("testdata", "rethinkdb-2.4.4", "logs", "s1.log"))
	serveName := strings.Join(strings.SplitAfter(string(s1Log), "\n")[:2], "")
	bad := absentLoopback(t)

	tests := []struct {
		name     string
		args     []string
		want     string // the whole output
		contains string // or a line of it
		match    string // or a regexp matching it
		code     int
	}{
		{name: "unknown option", args: []string{"--bogus"}, want: unknown, code: 1},
		{name: "proxy without --join", args: []string{"proxy", "--bind", "127.0.0.1"}, want: noJoin, code: 1},
		{name: "proxy --server-name", args: []string{"proxy", "--server-name", "proxy_server", "--join", "127.0.0.1:4000",
			"--join", "127.0.0.1:4002", "--cluster-port", "0", "--driver-port", "0", "--no-http-admin"}, want: string(proxyNameLog), code: 1},
		{name: "serve --server-name", args: []string{"serve", "--directory", filepath.Join(t.TempDir(), "s1"), "--server-name", "server_1"},
			want: serveName, code: 1},
		{name: "bind to an absent address", args: []string{"--directory", filepath.Join(t.TempDir(), "a"), "--server-name", "la",
			"--bind", bad, "--no-http-admin"}, want: "Could not find bind ip address '" + bad + "'\n", code: 1},
		{name: "cluster TLS options alone", args: []string{"--directory", filepath.Join(t.TempDir(), "tls"), "--cluster-tls-key", "key.pem"},
			contains: "error: --cluster-tls-key, --cluster-tls-cert, and --cluster-tls-ca must be specified together.\n", code: 1},
		{name: "--help", args: []string{"--help"}, want: help},
		{name: "help proxy", args: []string{"help", "proxy"}, want: proxyHelp},
		{name: "help create", args: []string{"help", "create"}, want: createHelp},
		// RETHINKDB_VERSION_STR is "rethinkdb <version> (<machine>) (<compiler>)"
		// (src/utils.hpp); the recorded build says "rethinkdb 2.4.4
		// (x86_64-linux-gnu) (GCC 12.2.0)" (README), but packages append
		// their own suffix to the version (mk/packaging.mk: 2.4.4~0<release>,
		// scripts/gen-version.sh: 2.4.4-<n>-g<hash> off a tag)
		// and builds differ in machine and compiler.
		{name: "version", args: []string{"--version"}, match: `(?m)^rethinkdb 2\.4\.4\b`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := harness.RunCommand(t, 30*time.Second, bin, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tt.code, out)
			}
			if tt.want != "" && out != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, tt.want)
			}
			if tt.contains != "" && !strings.Contains(out, tt.contains) {
				t.Errorf("output:\n%s\nwant a line %q", out, tt.contains)
			}
			if tt.match != "" && !regexp.MustCompile(tt.match).MatchString(out) {
				t.Errorf("output:\n%s\nwant a match for %s", out, tt.match)
			}
		})
	}

	t.Run("failed start leaves no new data directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "tls")
		_, code := harness.RunCommand(t, 30*time.Second, bin, "--directory", dir, "--cluster-tls-cert", "cert.pem")
		if code != 1 {
			t.Errorf("exit code %d, want 1", code)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("data directory %s exists after the failed start (stat: %v)", dir, err)
		}
	})
}
