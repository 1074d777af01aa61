package cli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/node"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorded reads a recording of the real server's output; the trailing
// "exit=N" line the recorder appended is split off.
func recorded(t *testing.T, name string) (text string, exit string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "e2e", "testdata", "rethinkdb-2.4.4", "cli", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if i := strings.LastIndex(s, "exit="); i >= 0 {
		return s[:i], strings.TrimSpace(s[i+len("exit="):])
	}
	return s, ""
}

type fakeRun struct {
	cfg    node.Config
	called bool
	err    error
}

func testDeps(t *testing.T, wd string, fr *fakeRun) deps {
	return deps{
		env: env{
			getwd: func() (string, error) { return wd, nil },
			localAddrs: func() ([]net.IP, error) {
				return []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.1.2.3")}, nil
			},
			warn: func(s string) { t.Log("warning:", s) },
			say:  func(s string) { t.Log("stdout:", s) },
		},
		signals: make(chan os.Signal),
		run: func(ctx context.Context, cfg node.Config) error {
			fr.called = true
			fr.cfg = cfg
			return fr.err
		},
		ppid:  func() int { return 42 },
		uid:   func() int { return 0 },
		uname: func() string { return "Linux 6.18.44-fc-v669 x86_64" },
	}
}

func runMain(t *testing.T, wd string, fr *fakeRun, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = mainWith(context.Background(), append([]string{"/usr/bin/rethinkdb"}, args...), &out, &errb, testDeps(t, wd, fr))
	return out.String(), errb.String(), code
}

// Error cases whose exact text was recorded from the real server.
func TestRecordedErrors(t *testing.T) {
	unknown, _ := recorded(t, "unknown-option.txt")
	noJoin, _ := recorded(t, "proxy-no-join.txt")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown option", []string{"--bogus"}, unknown},
		{"proxy without join", []string{"proxy", "--bind", "127.0.0.1"}, noJoin},
		{"proxy with server name", []string{"proxy", "--server-name", "proxy_server", "--join", "127.0.0.1:4000"},
			"Error in the command line: Unrecognized option '--server-name'.\nRun 'rethinkdb help proxy' for help on the command\n"},
		{"serve with server name (logs/s1.log)", []string{"serve", "--directory", "/data/s1", "--server-name", "server_1"},
			"Error in the command line: Unrecognized option '--server-name'.\nRun 'rethinkdb help serve' for help on the command\n"},
		{"bind to an address on no interface", []string{"--bind", "127.0.0.11", "--no-http-admin"},
			"Could not find bind ip address '127.0.0.11'\n"},
		{"partial cluster TLS", []string{"--cluster-tls-key", "k.pem"},
			"error: --cluster-tls-key, --cluster-tls-cert, and --cluster-tls-ca must be specified together.\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := &fakeRun{}
			stdout, stderr, code := runMain(t, t.TempDir(), fr, tt.args...)
			if code != 1 || stderr != tt.want || stdout != "" || fr.called {
				t.Errorf("got exit %d, stdout %q, stderr:\n%s\nwant exit 1, stderr:\n%s", code, stdout, stderr, tt.want)
			}
		})
	}
}

// Bad command lines not recorded: the messages are those of the real
// server's source (rethinkdb v2.4.4 command_line.cc / options.cc).
func TestBadCommandLines(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"opt=value is not an option", []string{"--cluster-port=4000"},
			"Error in the command line: Unrecognized option '--cluster-port=4000'.\nRun 'rethinkdb help' for help on the command\n"},
		{"non-numeric port", []string{"--driver-port", "abc"},
			"Option '--driver-port' (with value 'abc') not a valid integer\n"},
		{"port out of range", []string{"--http-port", "70000"},
			"Option '--http-port' (with value '70000', port offset 0) is not a valid port: ports go from 0 to 65535\n"},
		{"missing parameter", []string{"--cluster-port"},
			"Error in the command line: Option '--cluster-port' is missing its parameter.\nUsage:\n  --cluster-port port       port for receiving connections from other servers\n\nRun 'rethinkdb help' for help on the command\n"},
		{"parameter looks like an option", []string{"-j", "--bind"},
			"Error in the command line: Option '-j' is missing its parameter.\nUsage:\n  -j [ --join ] host[:port]\n                            host and port of a rethinkdb server to connect to\n\nRun 'rethinkdb help' for help on the command\n"},
		{"bad join", []string{"--join", "host:port"},
			"Error in the command line: Option '--join' has invalid host and port format 'host:port'\nUsage:\n  -j [ --join ] host[:port]\n                            host and port of a rethinkdb server to connect to\n\nRun 'rethinkdb help' for help on the command\n"},
		{"twice", []string{"--driver-port", "1", "--driver-port", "2"},
			"Error in the command line: Option '--driver-port' specified too many times.\nUsage:\n  --driver-port port        port for rethinkdb protocol client drivers\n\nRun 'rethinkdb help' for help on the command\n"},
		{"positional", []string{"--no-http-admin", "stray"},
			"Error in the command line: Unexpected positional parameter 'stray' (did you forget the option name, or forget to quote a parameter list?).\nRun 'rethinkdb help' for help on the command\n"},
		{"proxy has no directory", []string{"proxy", "--join", "a:1", "--directory", "x"},
			"Error in the command line: Unrecognized option '--directory'.\nRun 'rethinkdb help proxy' for help on the command\n"},
		{"proxy has no tags", []string{"proxy", "--join", "a:1", "-t", "x"},
			"Error in the command line: Unrecognized option '-t'.\nRun 'rethinkdb help proxy' for help on the command\n"},
		{"proxy has no cache size", []string{"proxy", "--join", "a:1", "--cache-size", "100"},
			"Error in the command line: Unrecognized option '--cache-size'.\nRun 'rethinkdb help proxy' for help on the command\n"},
		{"bad server name", []string{"--server-name", "a b"},
			"server-name 'a b' is invalid.  (Use A-Z, a-z, 0-9, _ and - only)\n\n"},
		{"bad tag", []string{"-t", "a.b"}, "--server_tag a.b is invalid. (Use A-Z, a-z, 0-9, _ and - only)\n\n"},
		{"bad cache size", []string{"--cache-size", "lots"}, "ERROR: cache-size should be a number or 'auto', got 'lots'\n"},
		{"bad reconnect timeout", []string{"--cluster-reconnect-timeout", "1h"},
			"ERROR: cluster-reconnect-timeout should be a number, got '1h'\n"},
		{"bad join delay", []string{"--join-delay", "x"}, "ERROR: join-delay should be a number, got 'x'\n"},
		{"bad cores", []string{"-c", "0"}, "ERROR: number specified for cores to use must be between 1 and 2000000000\n"},
		{"unparsable bind", []string{"--bind", "localhost"},
			"bind ip address 'localhost' could not be parsed: invalid IP address\n"},
		{"bad bind-driver", []string{"--bind-driver", "10.9.9.9"}, "Could not find bind ip address '10.9.9.9'\n"},
		{"driver TLS half", []string{"--driver-tls-key", "k"},
			"error: --driver-tls-key and --driver-tls-cert must be specified together.\n"},
		{"TLS protocol", []string{"--tls-min-protocol", "SSLv3"}, "error: Unrecognized TLS protocol version 'SSLv3'.\n"},
		{"serve needs a directory", []string{"serve", "-d", "/nonexistent/dir"},
			"The directory '/nonexistent/dir' does not exist, run 'rethinkdb create -d \"/nonexistent/dir\"' and try again.\n"},
		{"daemon", []string{"--daemon"},
			"rethinkdb-sim: --daemon is not supported: the simulator never daemonizes. Run it in the foreground (as a child process) instead.\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := &fakeRun{}
			stdout, stderr, code := runMain(t, t.TempDir(), fr, tt.args...)
			if code != 1 || stderr != tt.want || stdout != "" || fr.called {
				t.Errorf("got exit %d, stdout %q, stderr:\n%q\nwant exit 1, stderr:\n%q", code, stdout, stderr, tt.want)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	read := func(name string) string { s, _ := recorded(t, name); return s }
	tests := []struct {
		args     []string
		want     string
		wantCode int
	}{
		{[]string{"--help"}, read("help.txt"), 0},
		{[]string{"help"}, read("help.txt"), 0},
		{[]string{"-h"}, read("help.txt"), 0},
		{[]string{"help", "proxy"}, read("proxy-help.txt"), 0},
		{[]string{"proxy", "--help"}, read("proxy-help.txt"), 0},
		{[]string{"help", "create"}, read("create-help.txt"), 0},
		{[]string{"help", "serve"}, read("serve-help.txt"), 0},
		{[]string{"--cluster-port", "1", "--help"}, read("help.txt"), 0},
		{[]string{"-v"}, "rethinkdb 2.4.4 (x86_64-linux-gnu) (GCC 12.2.0)\nLinux 6.18.44-fc-v669 x86_64\n", 0},
		{[]string{"--version"}, "rethinkdb 2.4.4 (x86_64-linux-gnu) (GCC 12.2.0)\nLinux 6.18.44-fc-v669 x86_64\n", 0},
		{[]string{"help", "bogus"}, "ERROR: No help for 'bogus'\n", 1},
		{[]string{"help", "proxy", "create"}, "ERROR: Too many parameters to 'rethinkdb help'.  Try 'rethinkdb help [subcommand]'.\n", 1},
		{[]string{"-v", "extra"}, "WARNING: Ignoring extra parameters after '-v'.rethinkdb 2.4.4 (x86_64-linux-gnu) (GCC 12.2.0)\nLinux 6.18.44-fc-v669 x86_64\n", 0},
		{[]string{"proxy", "-v"}, "rethinkdb 2.4.4 (x86_64-linux-gnu) (GCC 12.2.0)\nLinux 6.18.44-fc-v669 x86_64\n", 0},
		{[]string{"bogus"}, "ERROR: Unrecognized subcommand 'bogus'. Try 'rethinkdb help'.\n", 1},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fr := &fakeRun{}
			stdout, stderr, code := runMain(t, t.TempDir(), fr, tt.args...)
			if code != tt.wantCode || stdout != tt.want || stderr != "" || fr.called {
				t.Errorf("got exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
			}
		})
	}
}

func TestConfigs(t *testing.T) {
	wd := t.TempDir()
	existing := filepath.Join(wd, "existing")
	if err := os.MkdirAll(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(existing, "metadata"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(wd, "rethinkdb.conf")
	if err := os.WriteFile(cfgFile, []byte("# secrets stay off argv\ninitial-password = s3cret\nno-http-admin\njoin=10.0.0.1\njoin=10.0.0.2:4000\ndriver-port=7000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	tests := []struct {
		name string
		args []string
		want node.Config
	}{
		{"defaults", nil, node.Config{
			Directory: filepath.Join(wd, "rethinkdb_data"), Tags: []string{"default"},
			ClusterPort: 29015, DriverPort: 28015, HTTPPort: 8080, ReconnectTimeout: day,
		}},
		{"the recorded server_2", []string{"--directory", "/data/s2", "--server-name", "server_2", "--cluster-port", "4001",
			"--http-port", "5001", "--driver-port", "6001", "--bind", "127.0.0.1", "--cache-size", "256", "--join", "127.0.0.1:4000"},
			node.Config{
				Directory: "/data/s2", ServerName: "server_2", Tags: []string{"default"}, Bind: []string{"127.0.0.1"},
				ClusterPort: 4001, DriverPort: 6001, HTTPPort: 5001, Join: []string{"127.0.0.1:4000"},
				ReconnectTimeout: day, CacheSizeMB: 256,
			}},
		{"the recorded proxy", []string{"proxy", "--join", "127.0.0.1:4000", "--join", "127.0.0.1:4002", "--cluster-port", "4003",
			"--http-port", "5003", "--driver-port", "6003", "--bind", "127.0.0.1"},
			node.Config{
				Proxy: true, Bind: []string{"127.0.0.1"}, ClusterPort: 4003, DriverPort: 6003, HTTPPort: 5003,
				Join: []string{"127.0.0.1:4000", "127.0.0.1:4002"}, ReconnectTimeout: day,
			}},
		{"proxy on free ports", []string{"proxy", "-j", "localhost", "--cluster-port", "0", "--driver-port", "0", "--no-http-admin"},
			node.Config{
				Proxy: true, Join: []string{"localhost:29015"}, NoHTTPAdmin: true, HTTPPort: 8080, ReconnectTimeout: day,
			}},
		{"short names, offset, tags, all", []string{"-d", "d", "-n", "x", "-t", "b", "-t", "a", "-t", "b", "-o", "10",
			"--bind", "all", "--bind", "0.0.0.0", "--cluster-port", "0", "--canonical-address", "db.example",
			"--canonical-address", "[::1]:5", "--cluster-reconnect-timeout", "30", "-j", "[::1]", "-j", "::2"},
			node.Config{
				Directory: filepath.Join(wd, "d"), ServerName: "x", Tags: []string{"b", "a", "default"},
				Bind: []string{"all"}, ClusterPort: 0, DriverPort: 28025, HTTPPort: 8090,
				CanonicalAddresses: []string{"db.example", "[::1]:5"}, Join: []string{"[::1]:29015", "[::2]:29015"},
				ReconnectTimeout: 30 * time.Second,
			}},
		{"config file, command line wins", []string{"--config-file", cfgFile, "--driver-port", "7001"},
			node.Config{
				Directory: filepath.Join(wd, "rethinkdb_data"), Tags: []string{"default"}, InitialPassword: "s3cret",
				NoHTTPAdmin: true, Join: []string{"10.0.0.1:29015", "10.0.0.2:4000"},
				ClusterPort: 29015, DriverPort: 7001, HTTPPort: 8080, ReconnectTimeout: day,
			}},
		{"existing directory keeps its name", []string{"-d", existing, "-n", "not valid"},
			node.Config{
				Directory: existing, ServerName: "not valid", Tags: []string{"default"},
				ClusterPort: 29015, DriverPort: 28015, HTTPPort: 8080, ReconnectTimeout: day,
			}},
		{"serve", []string{"serve", "-d", existing, "--cache-size", "auto", "--runuser", "nobody", "--no-update-check"},
			node.Config{
				Directory: existing, ClusterPort: 29015, DriverPort: 28015, HTTPPort: 8080, ReconnectTimeout: day,
			}},
		{"create", []string{"create", "-d", "fresh", "-n", "s"},
			node.Config{Directory: filepath.Join(wd, "fresh"), CreateOnly: true, ServerName: "s", Tags: []string{"default"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := &fakeRun{}
			argv := append([]string{"/usr/bin/rethinkdb"}, tt.args...)
			stdout, stderr, code := runMain(t, wd, fr, tt.args...)
			if code != 0 || !fr.called {
				t.Fatalf("exit %d (run called: %v), stdout %q, stderr %q", code, fr.called, stdout, stderr)
			}
			got := fr.cfg
			if got.Log == nil {
				t.Error("Config.Log is nil")
			}
			got.Log = nil
			tt.want.Argv = argv
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("config:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	wd := t.TempDir()
	tests := []struct {
		name, content, want string
	}{
		{"unknown", "bogus=1\n", "Error in the configuration file %s: Config file %s: parse error at line 0: unrecognized option name 'bogus'\nRun 'rethinkdb help' for help on the command\n"},
		{"no value", "\n\ndriver-port=\n", "Error in the configuration file %s: Config file %s: parse error at line 2: no parameter for option 'driver-port'\nRun 'rethinkdb help' for help on the command\n"},
		{"no equal sign", "driver-port 5\n", "Error in the configuration file %s: Config file %s: parse error at line 0\nRun 'rethinkdb help' for help on the command\n"},
		{"value on flag", "no-http-admin=yes\n", "Error in the configuration file %s: Config file %s: parse error at line 0: unexpected data after no-parameter option 'no-http-admin'\nRun 'rethinkdb help' for help on the command\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(wd, tt.name+".conf")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			fr := &fakeRun{}
			_, stderr, code := runMain(t, wd, fr, "--config-file", path)
			want := strings.ReplaceAll(tt.want, "%s", path)
			if code != 1 || stderr != want {
				t.Errorf("exit %d, stderr %q, want %q", code, stderr, want)
			}
		})
	}
	fr := &fakeRun{}
	_, stderr, code := runMain(t, wd, fr, "--config-file", filepath.Join(wd, "missing.conf"))
	if want := "Trouble reading config file '" + filepath.Join(wd, "missing.conf") + "'\n"; code != 1 || stderr != want {
		t.Errorf("missing config file: exit %d, stderr %q", code, stderr)
	}
}

func TestInitialPasswordAuto(t *testing.T) {
	wd := t.TempDir()
	fr := &fakeRun{}
	d := testDeps(t, wd, fr)
	var said []string
	d.env.say = func(s string) { said = append(said, s) }
	var out, errb bytes.Buffer
	if code := mainWith(context.Background(), []string{"rethinkdb", "--initial-password", "auto"}, &out, &errb, d); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	pw := fr.cfg.InitialPassword
	if len(pw) != 36 || pw == "auto" || len(said) != 1 || said[0] != "Generated random admin password: "+pw {
		t.Errorf("password %q, printed %q", pw, said)
	}
}

// A signal cancels the node's context with the real log line as the cause;
// the node's clean return is exit 0.
func TestSignalStopsNode(t *testing.T) {
	wd := t.TempDir()
	sigs := make(chan os.Signal, 1)
	d := testDeps(t, wd, &fakeRun{})
	d.signals = sigs
	cause := make(chan string, 1)
	d.run = func(ctx context.Context, cfg node.Config) error {
		sigs <- syscall.SIGTERM
		<-ctx.Done()
		cause <- context.Cause(ctx).Error()
		return nil
	}
	var out, errb bytes.Buffer
	code := mainWith(context.Background(), []string{"rethinkdb", "proxy", "-j", "a"}, &out, &errb, d)
	if code != 0 {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
	if got, want := <-cause, "Server got SIGTERM from pid 42, uid 0; shutting down..."; got != want {
		t.Errorf("cause %q, want %q", got, want)
	}
}

// A node that fails to start is exit 1 with its error, and a data directory
// that this run created is removed.
func TestNodeFailure(t *testing.T) {
	wd := t.TempDir()
	fr := &fakeRun{err: errors.New("error: TCP socket creation failed for port 29015: Address already in use.")}
	d := testDeps(t, wd, fr)
	d.run = func(ctx context.Context, cfg node.Config) error {
		if err := os.Mkdir(cfg.Directory, 0o755); err != nil {
			t.Error(err)
		}
		_, _ = cfg.Log.Write([]byte("Initializing directory " + cfg.Directory + "\n"))
		return fr.err
	}
	var out, errb bytes.Buffer
	code := mainWith(context.Background(), []string{"rethinkdb", "-d", "new"}, &out, &errb, d)
	if code != 1 || errb.String() != fr.err.Error()+"\n" {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
	if out.String() != "Initializing directory "+filepath.Join(wd, "new")+"\n" {
		t.Errorf("stdout %q", out.String())
	}
	if _, err := os.Stat(filepath.Join(wd, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("new directory left behind: %v", err)
	}
}
