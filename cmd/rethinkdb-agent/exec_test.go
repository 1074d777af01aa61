package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/discovery/static"
	"github.com/rethinkdb-agent/rethinkdb-agent/internal/testutil"
)

// TestMain doubles as a fake rethinkdb: with FAKE_RETHINKDB=<dir> the test
// binary writes its argv to <dir>/argv, copies the config file it was given
// to <dir>/config, and exits with FAKE_RETHINKDB_CODE on SIGTERM.
func TestMain(m *testing.M) {
	if dir := os.Getenv("FAKE_RETHINKDB"); dir != "" {
		os.Exit(fakeRethinkDB(dir))
	}
	goleak.VerifyTestMain(m)
}

func fakeRethinkDB(dir string) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	args := os.Args[1:]
	if cf := argValue(args, "--config-file"); cf != "" {
		data, _ := os.ReadFile(cf)
		st, _ := os.Stat(cf)
		_ = os.WriteFile(filepath.Join(dir, "config"), data, 0o600)
		_ = os.WriteFile(filepath.Join(dir, "config-mode"), []byte(st.Mode().Perm().String()), 0o600)
	}
	_ = os.WriteFile(filepath.Join(dir, "argv.tmp"), []byte(strings.Join(args, "\n")), 0o600)
	_ = os.Rename(filepath.Join(dir, "argv.tmp"), filepath.Join(dir, "argv"))
	if os.Getenv("FAKE_RETHINKDB_HANG_ON_JOIN") != "" {
		// Like a real server whose --join peers never answer: it serves
		// nothing until SIGTERM. Without --join it serves its driver port.
		if slices.Contains(args, "--join") {
			<-sigs
			return 0
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+argValue(args, "--driver-port"))
		if err != nil {
			return 9
		}
		defer ln.Close()
		_ = os.WriteFile(filepath.Join(dir, "alone"), []byte(strings.Join(args, "\n")), 0o600)
	}
	if os.Getenv("FAKE_RETHINKDB_EXIT_AT_ONCE") != "" {
		return 7
	}
	<-sigs
	code, _ := strconv.Atoi(os.Getenv("FAKE_RETHINKDB_CODE"))
	return code
}

func TestSplitExecArgs(t *testing.T) {
	t.Setenv(envPrefix+"DATA_ROOT", "")
	t.Setenv(envPrefix+"SERVER_NAME", "")
	tests := []struct {
		name      string
		args      []string
		wantAgent []string
		wantChild []string
		wantRoot  string
		wantWait  time.Duration
		wantErr   string
	}{
		{"plain", []string{"--", "rethinkdb", "--bind", "all"}, nil, []string{"rethinkdb", "--bind", "all"}, "", 3 * time.Second, ""},
		{"exec flags taken out", []string{"--data-root", "/data", "--collisions", "merge", "--initial-join-wait=1s", "--", "rethinkdb"},
			[]string{"--collisions", "merge"}, []string{"rethinkdb"}, "/data", time.Second, ""},
		{"single dash", []string{"-data-root=/d", "--", "rethinkdb"}, nil, []string{"rethinkdb"}, "/d", 3 * time.Second, ""},
		{"server name", []string{"--server-name", "a-b", "--", "rethinkdb"}, nil, []string{"rethinkdb"}, "", 3 * time.Second, ""},
		{"no separator", []string{"rethinkdb"}, nil, nil, "", 0, "missing '--'"},
		{"nothing after", []string{"--node", "x:1", "--"}, nil, nil, "", 0, "no rethinkdb command line"},
		{"bad wait", []string{"--initial-join-wait", "soon", "--", "rethinkdb"}, nil, nil, "", 0, "--initial-join-wait \"soon\""},
		{"missing value", []string{"--data-root"}, nil, nil, "", 0, "missing '--'"},
		{"missing value before separator", []string{"--data-root", "--", "x"}, nil, nil, "", 0, "needs an argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, agentArgs, child, err := splitExecArgs(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(agentArgs, tt.wantAgent) || !slices.Equal(child, tt.wantChild) ||
				opts.dataRoot != tt.wantRoot || opts.joinWait != tt.wantWait {
				t.Fatalf("got %q %q %+v", agentArgs, child, opts)
			}
		})
	}
}

func TestExecServerNameOption(t *testing.T) {
	tests := []struct{ flag, env, want string }{
		{"a-b", "", "a_b"},
		{"", "stack_rethinkdb_2", "stack_rethinkdb_2"},
		{"", "{{.Service.Name}}_{{.Task.Slot}}", ""}, // compose: no swarm expanded it
		{"x", "y", "x"},
	}
	for _, tt := range tests {
		t.Setenv(envPrefix+"SERVER_NAME", tt.env)
		args := []string{"--", "rethinkdb"}
		if tt.flag != "" {
			args = append([]string{"--server-name", tt.flag}, args...)
		}
		opts, _, _, err := splitExecArgs(args)
		if err != nil || opts.serverName != tt.want {
			t.Errorf("flag %q env %q: got %q, %v; want %q", tt.flag, tt.env, opts.serverName, err, tt.want)
		}
	}
}

func TestSplitExecArgsEnv(t *testing.T) {
	t.Setenv(envPrefix+"DATA_ROOT", "/env")
	t.Setenv(envPrefix+"INITIAL_JOIN_WAIT", "0s")
	opts, _, _, err := splitExecArgs([]string{"--", "rethinkdb"})
	if err != nil || opts.dataRoot != "/env" || opts.joinWait != 0 {
		t.Fatalf("got %+v, %v", opts, err)
	}
	t.Setenv(envPrefix+"INITIAL_JOIN_WAIT", "x")
	if _, _, _, err := splitExecArgs([]string{"--", "rethinkdb"}); err == nil || !strings.Contains(err.Error(), "INITIAL_JOIN_WAIT") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseRethinkArgs(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		driver      int
		cluster     int
		host        string
		has         []string
		wantErr     string
		proxyWanted bool
		conf        map[string][]string
	}{
		{"defaults", nil, 28015, 29015, "127.0.0.1", nil, "", false, nil},
		{"serve and ports", []string{"serve", "--driver-port", "7000", "--cluster-port", "7001", "-d", "/x"}, 7000, 7001, "127.0.0.1",
			[]string{"--driver-port", "--directory"}, "", false, nil},
		{"offset applies to defaults and explicit ports", []string{"-o", "2", "--driver-port", "100"}, 102, 29017, "127.0.0.1", nil, "", false, nil},
		{"bind all", []string{"--bind", "all"}, 28015, 29015, "127.0.0.1", nil, "", false, nil},
		{"bind one address", []string{"--bind", "10.0.0.5"}, 28015, 29015, "10.0.0.5", nil, "", false, nil},
		{"bind driver loopback too", []string{"--bind-driver", "10.0.0.5", "--bind", "127.0.0.1"}, 28015, 29015, "127.0.0.1", nil, "", false, nil},
		{"aliases", []string{"-n", "x", "-j", "a:1"}, 28015, 29015, "127.0.0.1", []string{"--server-name", "--join"}, "", false, nil},
		{"proxy", []string{"proxy", "--join", "a:1"}, 28015, 29015, "127.0.0.1", nil, "", true, nil},
		{"bad port", []string{"--driver-port", "x"}, 0, 0, "", nil, "--driver-port \"x\"", false, nil},
		{"free driver port", []string{"--driver-port", "0"}, 0, 0, "", nil, "fixed driver port", false, nil},
		{"other command", []string{"export"}, 0, 0, "", nil, "rethinkdb export", false, nil},
		{"config file ports, names, joins", nil, 7002, 7003, "10.0.0.9", []string{"--server-name", "--join", "--directory"}, "", false,
			map[string][]string{"driver-port": {"7000"}, "cluster-port": {"7001"}, "port-offset": {"2"}, "bind": {"10.0.0.9"},
				"server-name": {"conf_name"}, "join": {"10.0.0.1:29015", "10.0.0.2:29015"}, "directory": {"/data/x"}}},
		{"command line beats config file", []string{"--driver-port", "8000", "--bind", "all"}, 8000, 29015, "127.0.0.1", nil, "", false,
			map[string][]string{"driver-port": {"7000"}, "bind": {"10.0.0.9"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseRethinkArgs(tt.args, tt.conf)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.driverPort != tt.driver || r.clusterPort != tt.cluster || r.nodeHost() != tt.host || r.proxy != tt.proxyWanted {
				t.Fatalf("got driver %d cluster %d host %s proxy %v", r.driverPort, r.clusterPort, r.nodeHost(), r.proxy)
			}
			for _, h := range tt.has {
				if !r.has[h] {
					t.Errorf("has[%s] = false", h)
				}
			}
		})
	}
}

func TestNameFromPTR(t *testing.T) {
	tests := []struct{ ptr, want string }{
		{"myapp_rethinkdb_3.myapp_default.", "myapp_rethinkdb_3"},                           // compose v1
		{"myapp-rethinkdb-3.myapp_default", "myapp_rethinkdb_3"},                            // compose v2
		{"stack_rethinkdb.2.k3j4h5g6f7d8s9a0q1w2e3r4t.stack_default.", "stack_rethinkdb_2"}, // swarm task
		{"db.example.", "db"},
		{"---.x", ""},
	}
	for _, tt := range tests {
		if got := nameFromPTR(tt.ptr); got != tt.want {
			t.Errorf("nameFromPTR(%q) = %q, want %q", tt.ptr, got, tt.want)
		}
	}
}

func TestDefaultServerName(t *testing.T) {
	dir := t.TempDir()
	docker := filepath.Join(dir, "docker.conf")
	other := filepath.Join(dir, "other.conf")
	_ = os.WriteFile(docker, []byte("search x\nnameserver 127.0.0.11\noptions ndots:0\n"), 0o644)
	_ = os.WriteFile(other, []byte("nameserver 10.96.0.10\n"), 0o644)
	ips := func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("172.20.0.3")}, nil }
	ptr := func(name string, err error) func(context.Context, string) ([]string, error) {
		return func(_ context.Context, addr string) ([]string, error) {
			if addr != "172.20.0.3" {
				return nil, errors.New("unexpected address " + addr)
			}
			return []string{name}, err
		}
	}
	host := func(h string) func() (string, error) { return func() (string, error) { return h, nil } }
	tests := []struct {
		name string
		src  nameSource
		want string
	}{
		{"compose", nameSource{docker, host("0123456789ab"), ips, ptr("p_rethinkdb_2.p_default.", nil)}, "p_rethinkdb_2"},
		{"docker DNS without PTR", nameSource{docker, host("0123456789ab"), ips, ptr("", errors.New("nxdomain"))}, "0123456789ab"},
		{"kubernetes pod", nameSource{other, host("rethinkdb-0"), ips, ptr("never.asked.", nil)}, "rethinkdb_0"},
		{"no resolv.conf", nameSource{filepath.Join(dir, "none"), host("h.example.com"), ips, nil}, "h_example_com"},
		{"nothing usable", nameSource{other, host("..."), ips, nil}, "rethinkdb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := defaultServerName(context.Background(), tt.src); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReverseName(t *testing.T) {
	if got := reverseName("172.20.0.3"); got != "3.0.20.172.in-addr.arpa." {
		t.Fatal(got)
	}
	if got := reverseName("::1"); !strings.HasPrefix(got, "1.0.0.0.") || !strings.HasSuffix(got, ".ip6.arpa.") {
		t.Fatal(got)
	}
}

// TestLookupPTR asks a fake DNS server on loopback.
func TestLookupPTR(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var q dnsmessage.Message
			if q.Unpack(buf[:n]) != nil || len(q.Questions) != 1 {
				continue
			}
			r := dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID, Response: true}, Questions: q.Questions}
			if q.Questions[0].Name.String() == "3.0.20.172.in-addr.arpa." {
				r.Answers = []dnsmessage.Resource{{
					Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET, TTL: 60},
					Body:   &dnsmessage.PTRResource{PTR: dnsmessage.MustNewName("p_rethinkdb_1.p_default.")},
				}}
			}
			out, _ := r.Pack()
			_, _ = pc.WriteTo(out, from)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names, err := lookupPTR(ctx, pc.LocalAddr().String(), "172.20.0.3")
	if err != nil || !slices.Equal(names, []string{"p_rethinkdb_1.p_default."}) {
		t.Fatalf("got %q, %v", names, err)
	}
	if _, err := lookupPTR(ctx, pc.LocalAddr().String(), "172.20.0.4"); err == nil {
		t.Fatal("want an error for an address without PTR")
	}
}

func TestWritePasswordConfig(t *testing.T) {
	dir := t.TempDir()
	user := filepath.Join(dir, "user.conf")
	_ = os.WriteFile(user, []byte("cache-size=100\ninitial-password=old\n"), 0o644)
	path, err := writePasswordConfig(dir, user, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if got := string(data); !strings.Contains(got, "cache-size=100\n") || strings.Contains(got, "old") ||
		!strings.HasSuffix(got, "initial-password=s3cret\n") {
		t.Errorf("config file:\n%s", got)
	}
	for _, bad := range []string{"a\nb", "a#b", " ab", "ab\t"} {
		if _, err := writePasswordConfig(dir, "", bad); err == nil {
			t.Errorf("password %q: want an error (the config file cannot carry it)", bad)
		}
	}
	if _, err := writePasswordConfig(dir, filepath.Join(dir, "missing"), "x"); err == nil || !strings.Contains(err.Error(), "--config-file") {
		t.Errorf("err = %v", err)
	}
}

func TestProbePeers(t *testing.T) {
	self := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	peers := []discovery.Peer{
		{Addrs: []string{"10.0.0.1", "10.0.0.2"}, Port: 29015},
		{Addrs: []string{"10.0.0.3"}, Port: 29015},
		{Addrs: []string{"127.0.0.1"}, Port: 29015},
		{Addrs: []string{"10.0.0.2"}, Port: 29015}, // twice
	}
	var asked []string
	probe := func(_ context.Context, ep netip.AddrPort) error {
		asked = append(asked, ep.String())
		if ep.Addr().String() == "10.0.0.3" {
			return errors.New("refused")
		}
		return nil
	}
	got := probePeers(context.Background(), peers, self, probe)
	if !slices.Equal(got, []string{"10.0.0.2:29015"}) {
		t.Fatalf("got %q", got)
	}
	if slices.Contains(asked, "10.0.0.1:29015") || slices.Contains(asked, "127.0.0.1:29015") {
		t.Fatalf("probed itself: %q", asked)
	}
}

func TestReachablePeers(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skip("no 127.0.0.2:", err)
	}
	defer ln.Close()
	tcp := func(ctx context.Context, ep netip.AddrPort) error {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", ep.String())
		if err == nil {
			c.Close()
		}
		return err
	}
	// Loopback peers are skipped as "self", so test the answering one
	// through a probe that maps 10.9.9.9 to the listener.
	port := ln.Addr().(*net.TCPAddr).Port
	probe := func(ctx context.Context, ep netip.AddrPort) error {
		if ep.Addr().String() == "10.9.9.9" {
			return tcp(ctx, netip.MustParseAddrPort(ln.Addr().String()))
		}
		return errors.New("unreachable")
	}
	p, err := static.New([]string{"10.9.9.9:" + strconv.Itoa(port), "10.9.9.8:" + strconv.Itoa(port)}, "", log)
	if err != nil {
		t.Fatal(err)
	}
	got := reachablePeers(context.Background(), discovery.NewManager(log, p), 5*time.Second, nil, probe, log)
	if !slices.Equal(got, []string{"10.9.9.9:" + strconv.Itoa(port)}) {
		t.Fatalf("got %q", got)
	}
	// Nobody answers: empty after the wait.
	p2, _ := static.New([]string{"10.9.9.8:1"}, "", log)
	if got := reachablePeers(context.Background(), discovery.NewManager(log, p2), 200*time.Millisecond, nil, probe, log); got != nil {
		t.Fatalf("got %q", got)
	}
}

// freePort returns a TCP port nobody listens on (for the agent's --node).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitFile(t *testing.T, path string) string {
	t.Helper()
	var data []byte
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		var err error
		data, err = os.ReadFile(path)
		return err == nil, fmt.Sprintf("%s never appeared: %v", path, err)
	})
	return string(data)
}

// TestExecRun runs the test binary as a fake rethinkdb: the flags exec adds,
// the password kept off argv, SIGTERM forwarded, the exit code passed on.
func TestExecRun(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	_ = os.WriteFile(pwFile, []byte("hunter2\n"), 0o600)
	t.Setenv("FAKE_RETHINKDB", dir)
	t.Setenv("FAKE_RETHINKDB_CODE", "3")
	t.Setenv(envPrefix+"PASSWORD", "")
	driver := freePort(t)
	sigs := make(chan os.Signal, 1)
	var stderr testutil.SyncBuffer // exec's and the agent loop's loggers write at once
	done := make(chan int, 1)
	go func() {
		code, err := execRun(context.Background(), []string{"--data-root", filepath.Join(dir, "data"), "--password-file", pwFile,
			"--initial-join-wait", "0s", "--interval", "50ms", "--http", "off", "--", os.Args[0], "--driver-port", strconv.Itoa(driver), "--bind", "all"},
			sigs, &stderr)
		if err != nil {
			t.Error(err)
		}
		done <- code
	}()
	argv := strings.Split(waitFile(t, filepath.Join(dir, "argv")), "\n")
	name := argValue(argv, "--server-name")
	if name == "" || argValue(argv, "--directory") != filepath.Join(dir, "data", name) {
		t.Errorf("argv %q: want --server-name and --directory <root>/<name>", argv)
	}
	if slices.ContainsFunc(argv, func(a string) bool { return strings.Contains(a, "hunter2") }) {
		t.Errorf("the password is on argv: %q", argv)
	}
	if cfg := waitFile(t, filepath.Join(dir, "config")); cfg != "initial-password=hunter2\n" {
		t.Errorf("config file %q", cfg)
	}
	if mode := waitFile(t, filepath.Join(dir, "config-mode")); mode != "-rw-------" {
		t.Errorf("config file mode %s", mode)
	}
	sigs <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 3 {
			t.Fatalf("exit code %d, want the child's 3\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("exec did not return after SIGTERM")
	}
	if !strings.Contains(stderr.String(), "node=127.0.0.1:"+strconv.Itoa(driver)) {
		t.Errorf("agent not pointed at the child's driver port:\n%s", stderr.String())
	}
}

func TestExecRunChildExitsAlone(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FAKE_RETHINKDB", dir)
	t.Setenv("FAKE_RETHINKDB_EXIT_AT_ONCE", "1")
	code, err := execRun(context.Background(), []string{"--initial-join-wait", "0s", "--", os.Args[0], "--server-name", "mine",
		"--driver-port", strconv.Itoa(freePort(t))}, make(chan os.Signal), io.Discard)
	if err != nil || code != 7 {
		t.Fatalf("code %d, err %v; want 7", code, err)
	}
	argv := strings.Split(waitFile(t, filepath.Join(dir, "argv")), "\n")
	if strings.Count(strings.Join(argv, " "), "--server-name") != 1 || slices.Contains(argv, "--directory") || slices.Contains(argv, "--config-file") {
		t.Fatalf("argv %q: the user's --server-name stays alone; no data root, no password: nothing added", argv)
	}
}

func TestExecRunErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"rethinkdb"}, "missing '--'"},
		{[]string{"--", "rethinkdb", "proxy", "--join", "a:1"}, "not a proxy"},
		{[]string{"--collisions", "never", "--", "rethinkdb"}, "never"},
		{[]string{"--", "/nonexistent/rethinkdb", "--server-name", "x"}, "start /nonexistent/rethinkdb"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			args := append([]string{"--initial-join-wait", "0s"}, tt.args...)
			code, err := execRun(context.Background(), args, make(chan os.Signal), io.Discard)
			if err == nil || code == 0 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("code %d, err %v; want %q", code, err, tt.want)
			}
		})
	}
}

// TestExecRunSignalBeforeStart: a SIGTERM during the join round ends it and
// rethinkdb never starts.
func TestExecRunSignalBeforeStart(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FAKE_RETHINKDB", dir)
	sigs := make(chan os.Signal, 1)
	sigs <- syscall.SIGTERM
	done := make(chan struct{})
	var code int
	var err error
	go func() {
		defer close(done)
		// A peer that never answers and a round that would last 10 minutes.
		code, err = execRun(context.Background(), []string{"--initial-join-wait", "10m", "--peer", "10.255.255.1:29015",
			"--", os.Args[0], "--server-name", "x", "--driver-port", strconv.Itoa(freePort(t))}, sigs, io.Discard)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the join round went on after SIGTERM")
	}
	if code != 128+int(syscall.SIGTERM) || err == nil || !strings.Contains(err.Error(), "before rethinkdb started") {
		t.Fatalf("code %d, err %v", code, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "argv")); err == nil {
		t.Fatal("rethinkdb was started")
	}
}

// A real 2.4.4 refuses `rethinkdb serve --server-name …` ("Unrecognized
// option --server-name", transcripts/commands.log line 2): exec runs the
// default form instead, which takes the same options plus the server ones.
func TestExecRunServeBecomesDefaultForm(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FAKE_RETHINKDB", dir)
	t.Setenv("FAKE_RETHINKDB_EXIT_AT_ONCE", "1")
	code, err := execRun(context.Background(), []string{"--initial-join-wait", "0s", "--data-root", filepath.Join(dir, "data"),
		"--", os.Args[0], "serve", "--driver-port", strconv.Itoa(freePort(t))}, make(chan os.Signal), io.Discard)
	if err != nil || code != 7 {
		t.Fatalf("code %d, err %v; want 7", code, err)
	}
	argv := strings.Split(waitFile(t, filepath.Join(dir, "argv")), "\n")
	if slices.Contains(argv, "serve") || argValue(argv, "--server-name") == "" || argValue(argv, "--directory") == "" {
		t.Fatalf("argv %q: want no 'serve', and --server-name and --directory added", argv)
	}
}

// readRethinkConfig follows options::parse_config_file (options.cc): '#'
// anywhere starts a comment, blanks around the name and '=' go, repeats add.
func TestReadRethinkConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rethinkdb.conf")
	_ = os.WriteFile(path, []byte("# a comment\n  server-name = from_conf  # trailing\njoin=10.0.0.1:29015\njoin=10.0.0.2:29015\n"+
		"no-http-admin\n\nbind\t=all\n#directory=/nope\n"), 0o600)
	got, err := readRethinkConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"server-name": {"from_conf"}, "join": {"10.0.0.1:29015", "10.0.0.2:29015"},
		"no-http-admin": {""}, "bind": {"all"}}
	if len(got) != len(want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, err := readRethinkConfig(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "--config-file") {
		t.Errorf("missing file: err = %v", err)
	}
}

// Options in the user's config file count: rethinkdb lets a command-line
// option replace the file's values (options::merge), so exec adding
// --server-name, --directory or --join would override the user's file.
func TestExecRunHonoursConfigFile(t *testing.T) {
	dir := t.TempDir()
	driver := freePort(t)
	conf := filepath.Join(dir, "rethinkdb.conf")
	_ = os.WriteFile(conf, []byte(fmt.Sprintf("server-name=conf_name\ndirectory=%s\njoin=10.9.9.9:29015\ndriver-port=%d\n",
		filepath.Join(dir, "own"), driver)), 0o600)
	t.Setenv("FAKE_RETHINKDB", dir)
	t.Setenv("FAKE_RETHINKDB_EXIT_AT_ONCE", "1")
	var stderr testutil.SyncBuffer
	code, err := execRun(context.Background(), []string{"--initial-join-wait", "5s", "--data-root", filepath.Join(dir, "data"),
		"--peer", "127.0.0.1:1", "--", os.Args[0], "--config-file", conf}, make(chan os.Signal), &stderr)
	if err != nil || code != 7 {
		t.Fatalf("code %d, err %v; want 7", code, err)
	}
	argv := strings.Split(waitFile(t, filepath.Join(dir, "argv")), "\n")
	for _, f := range []string{"--server-name", "--directory", "--join"} {
		if slices.Contains(argv, f) {
			t.Errorf("argv %q: %s is in the config file and must not be added", argv, f)
		}
	}
	if !strings.Contains(stderr.String(), "node=127.0.0.1:"+strconv.Itoa(driver)) || !strings.Contains(stderr.String(), "server_name=conf_name") {
		t.Errorf("want the config file's driver port and name:\n%s", stderr.String())
	}
}

// A server started with --join serves nothing until one join peer answers,
// and retries for ever (initial_join.cc; logs/join-unreachable.log). exec
// restarts it without the joins it added when it does not serve in time.
func TestExecRunRestartsAloneWhenJoinHangs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FAKE_RETHINKDB", dir)
	t.Setenv("FAKE_RETHINKDB_HANG_ON_JOIN", "1")
	t.Setenv("FAKE_RETHINKDB_CODE", "0")
	oldFind, oldTimeout := findJoins, joinTimeout
	findJoins = func(context.Context, *discovery.Manager, time.Duration, *slog.Logger) []string {
		return []string{"10.255.255.1:29015"}
	}
	joinTimeout = 300 * time.Millisecond
	t.Cleanup(func() { findJoins, joinTimeout = oldFind, oldTimeout })

	sigs := make(chan os.Signal, 1)
	var stderr testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		code, err := execRun(context.Background(), []string{"--initial-join-wait", "1s", "--interval", "50ms", "--http", "off",
			"--", os.Args[0], "--server-name", "s", "--driver-port", strconv.Itoa(freePort(t))}, sigs, &stderr)
		if err != nil {
			t.Error(err)
		}
		done <- code
	}()
	argv := strings.Split(waitFile(t, filepath.Join(dir, "alone")), "\n")
	if slices.Contains(argv, "--join") || argValue(argv, "--server-name") != "s" {
		t.Errorf("restarted with %q: want the same command line without --join", argv)
	}
	sigs <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("exec did not return after SIGTERM")
	}
	if !strings.Contains(stderr.String(), "restarting it alone") {
		t.Errorf("want the restart logged:\n%s", stderr.String())
	}
}

// lineWatcher spots network_logger.cc's "Connected to server …" line, however
// the writes split it, and passes every byte through.
func TestLineWatcher(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   bool
	}{
		{"whole line", []string{"Listening for intracluster connections on port 29015\nConnected to server \"s2\" 0bc9…\n"}, true},
		{"split", []string{"Connec", "ted ", "to server \"s2\"\n"}, true},
		{"not at a line start", []string{"Warning: Connected to server\n"}, false},
		{"nothing yet", []string{"Attempting connection to 1 peer...\n"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			found := 0
			lw := &lineWatcher{w: &out, prefix: "Connected to ", found: func() { found++ }}
			for _, w := range tc.writes {
				if n, err := lw.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if (found > 0) != tc.want || out.String() != strings.Join(tc.writes, "") {
				t.Errorf("found %d times, passed %q", found, out.String())
			}
		})
	}
}
