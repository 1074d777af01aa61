package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

const execUsage = `Usage: rethinkdb-agent exec [flags] -- rethinkdb [serve] [ARGS...]

Runs rethinkdb as a child (the container's entrypoint) and the agent loop of
'rethinkdb-agent run' beside it. SIGTERM and SIGINT are forwarded to
rethinkdb, and rethinkdb's exit code becomes this command's exit code.

'rethinkdb serve ARGS' runs as 'rethinkdb ARGS': serve accepts no
--server-name and never creates its data directory.

Before starting rethinkdb it adds to ARGS, unless ARGS or the file of their
--config-file already say:
  --join IP:PORT      for every discovered peer whose cluster port answers
                      (one short discovery round; none: the node starts alone
                      and the agent bridges it later). rethinkdb serves
                      nothing until one of them answers, so when it neither
                      connects to one nor serves within 60s it is restarted
                      without them.
  --server-name NAME  -server-name, else <project>_<service>_<n> from Docker's
                      DNS for compose containers, else the host name, with
                      every character outside [A-Za-z0-9_] replaced by '_'
  --directory DIR     DATA_ROOT/NAME when --data-root is set, so that the
                      replicas of a scaled service can share one volume
  --config-file FILE  a 0600 file holding initial-password, when a password
                      is configured (--password-file): a password on the
                      command line would be shown to every client in
                      server_status.process.argv. RethinkDB sets it when the
                      admin user has no password yet (a new data directory,
                      or one whose password is empty), and ignores it else.
The agent's --node defaults to 127.0.0.1 and rethinkdb's driver port (from
--driver-port and -o/--port-offset in ARGS), --proxy-bind to "all" and
--rethinkdb to the binary in ARGS.

Flags (the flags of 'run', plus):
  -server-name NAME
    	the server name when ARGS have none, instead of the derived one; a swarm
    	template such as {{.Service.Name}}_{{.Task.Slot}} left unexpanded is
    	ignored (env RETHINKDB_AGENT_SERVER_NAME)
  -data-root PATH
    	keep each server's data in PATH/<server name> (env RETHINKDB_AGENT_DATA_ROOT)
  -initial-join-wait DURATION
    	how long to look for reachable peers before starting rethinkdb (env RETHINKDB_AGENT_INITIAL_JOIN_WAIT) (default 3s)
`

// execOptions are the flags that only exec has.
type execOptions struct {
	dataRoot   string
	serverName string
	joinWait   time.Duration
}

// splitExecArgs separates the agent's flags from rethinkdb's command line at
// "--" and takes the exec-only flags out of the agent's flags.
func splitExecArgs(args []string) (opts execOptions, agentArgs, child []string, err error) {
	i := slices.Index(args, "--")
	if i < 0 {
		return opts, nil, nil, errors.New("missing '--' before the rethinkdb command line")
	}
	agentArgs, child = args[:i], args[i+1:]
	if len(child) == 0 {
		return opts, nil, nil, errors.New("no rethinkdb command line after '--'")
	}
	opts.joinWait = 3 * time.Second
	joinWait := ""
	var rest []string
	for j := 0; j < len(agentArgs); j++ {
		a := agentArgs[j]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !slices.Contains([]string{"data-root", "server-name", "initial-join-wait"}, name) {
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if j+1 >= len(agentArgs) {
				return opts, nil, nil, fmt.Errorf("flag needs an argument: -%s", name)
			}
			j++
			val = agentArgs[j]
		}
		switch name {
		case "data-root":
			opts.dataRoot = val
		case "server-name":
			opts.serverName = val
		default:
			joinWait = "--initial-join-wait " + val
			if opts.joinWait, err = time.ParseDuration(val); err != nil || opts.joinWait < 0 {
				return opts, nil, nil, fmt.Errorf("--initial-join-wait %q: want a duration such as 3s", val)
			}
		}
	}
	if opts.dataRoot == "" {
		opts.dataRoot = os.Getenv(envPrefix + "DATA_ROOT")
	}
	if opts.serverName == "" {
		opts.serverName = os.Getenv(envPrefix + "SERVER_NAME")
	}
	// A swarm template ({{.Task.Slot}}) that no swarm expanded: compose
	// passes it as it is. Then the name comes from DNS or the host name.
	if strings.Contains(opts.serverName, "{{") {
		opts.serverName = ""
	}
	opts.serverName = sanitizeName(opts.serverName)
	if v, ok := os.LookupEnv(envPrefix + "INITIAL_JOIN_WAIT"); ok && joinWait == "" {
		if opts.joinWait, err = time.ParseDuration(v); err != nil || opts.joinWait < 0 {
			return opts, nil, nil, fmt.Errorf("environment variable %sINITIAL_JOIN_WAIT %q: want a duration such as 3s", envPrefix, v)
		}
	}
	return opts, rest, child, nil
}

// rdbArgs is what exec needs to know of rethinkdb's command line. RethinkDB
// takes "--name value" only (never --name=value).
type rdbArgs struct {
	args        []string // without the binary
	proxy       bool
	driverPort  int
	clusterPort int
	binds       []string
	serverName  string          // --server-name, from ARGS or the config file
	has         map[string]bool // canonical long option names present, in ARGS or the config file
}

var rdbAliases = map[string]string{
	"-d": "--directory", "-n": "--server-name", "-j": "--join", "-o": "--port-offset", "-t": "--server-tag",
}

// parseRethinkArgs reads rethinkdb's command line and, under it, the options
// of its config file (conf, as readRethinkConfig returns them). As rethinkdb
// does (options::merge in options.cc), an option given on the command line
// replaces the config file's values of that option entirely.
func parseRethinkArgs(args []string, conf map[string][]string) (*rdbArgs, error) {
	r := &rdbArgs{args: args, has: map[string]bool{}}
	vals := map[string]string{}
	var bindDriver, bindAll []string
	for i, a := range args {
		if i == 0 && !strings.HasPrefix(a, "-") {
			switch a {
			case "serve":
				continue
			case "proxy":
				r.proxy = true
				continue
			default:
				return nil, fmt.Errorf("rethinkdb %s: exec runs 'rethinkdb [serve] ARGS' or 'rethinkdb proxy ARGS'", a)
			}
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name := a
		if long, ok := rdbAliases[a]; ok {
			name = long
		}
		r.has[name] = true
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			switch name {
			case "--bind":
				bindAll = append(bindAll, args[i+1])
			case "--bind-driver":
				bindDriver = append(bindDriver, args[i+1])
			case "--bind-cluster":
			default:
				vals[name] = args[i+1]
			}
		}
	}
	for k, vs := range conf {
		name := "--" + k
		if r.has[name] || len(vs) == 0 {
			continue // the command line wins
		}
		r.has[name] = true
		switch name {
		case "--bind":
			bindAll = vs
		case "--bind-driver":
			bindDriver = vs
		default:
			vals[name] = vs[len(vs)-1]
		}
	}
	r.binds = slices.Concat(bindDriver, bindAll)
	r.serverName = vals["--server-name"]
	num := func(name string, def int) (int, error) {
		v, ok := vals[name]
		if !ok {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 65535 {
			return 0, fmt.Errorf("rethinkdb %s %q: not a port", name, v)
		}
		return n, nil
	}
	offset, err := num("--port-offset", 0)
	if err != nil {
		return nil, err
	}
	if r.driverPort, err = num("--driver-port", 28015); err != nil {
		return nil, err
	}
	if r.clusterPort, err = num("--cluster-port", 29015); err != nil {
		return nil, err
	}
	// As rethinkdb does: the offset applies to every port but 0 (a free one).
	if r.driverPort != 0 {
		r.driverPort += offset
	}
	if r.clusterPort != 0 {
		r.clusterPort += offset
	}
	if r.driverPort == 0 || r.driverPort > 65535 {
		return nil, fmt.Errorf("rethinkdb driver port %d: exec needs a fixed driver port for the agent", r.driverPort)
	}
	return r, nil
}

// nodeHost is where the agent reaches the driver port: loopback unless the
// driver port is bound to specific non-loopback addresses only.
func (r *rdbArgs) nodeHost() string {
	if len(r.binds) == 0 {
		return "127.0.0.1"
	}
	for _, b := range r.binds {
		if b == "all" || b == "0.0.0.0" {
			return "127.0.0.1"
		}
		if ip, err := netip.ParseAddr(b); err == nil && ip.IsLoopback() {
			return "127.0.0.1"
		}
	}
	return r.binds[0]
}

// serverNameRE is what a RethinkDB server name may hold.
var invalidNameChars = regexp.MustCompile(`[^A-Za-z0-9_]`)

func sanitizeName(s string) string {
	s = invalidNameChars.ReplaceAllString(s, "_")
	if s == "" || strings.Trim(s, "_") == "" {
		return ""
	}
	return s
}

// swarmTask matches the start of the name Docker's DNS gives a swarm task:
// <service>.<slot>.<task id>.
var swarmTask = regexp.MustCompile(`^([^.]+)\.([0-9]+)\.[a-z0-9]{25}(\.|$)`)

// nameFromPTR turns the reverse DNS name Docker's embedded DNS gives a
// container into a server name that survives the container's recreation:
// compose containers are "<project>_<service>_<n>.<network>" (compose v1) or
// "<project>-<service>-<n>.<network>" (v2), swarm tasks
// "<stack>_<service>.<slot>.<task id>.<network>".
func nameFromPTR(ptr string) string {
	ptr = strings.TrimSuffix(ptr, ".")
	if m := swarmTask.FindStringSubmatch(ptr); m != nil {
		return sanitizeName(m[1] + "_" + m[2])
	}
	first, _, _ := strings.Cut(ptr, ".")
	return sanitizeName(first)
}

// nameSource is what defaultServerName asks of the machine (replaced in tests).
type nameSource struct {
	resolvConf string
	hostname   func() (string, error)
	localIPs   func() ([]netip.Addr, error)
	lookupAddr func(ctx context.Context, addr string) ([]string, error)
}

func systemNameSource() nameSource {
	return nameSource{
		resolvConf: "/etc/resolv.conf",
		hostname:   os.Hostname,
		localIPs:   localIPs,
		lookupAddr: func(ctx context.Context, addr string) ([]string, error) {
			return lookupPTR(ctx, "127.0.0.11:53", addr)
		},
	}
}

// lookupPTR asks one DNS server for addr's PTR names. net.Resolver would
// answer from /etc/hosts first, where Docker maps the container's IP to its
// host name (the container id): the name we want only DNS knows.
func lookupPTR(ctx context.Context, server, addr string) ([]string, error) {
	arpa, err := dnsmessage.NewName(reverseName(addr))
	if err != nil {
		return nil, err
	}
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: uint16(time.Now().UnixNano()), RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: arpa, Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET}},
	}
	packed, err := q.Pack()
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(packed); err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		return nil, err
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf[:n]); err != nil {
		return nil, err
	}
	if m.ID != q.ID {
		return nil, errors.New("PTR reply with another id")
	}
	var names []string
	for _, a := range m.Answers {
		if ptr, ok := a.Body.(*dnsmessage.PTRResource); ok {
			names = append(names, ptr.PTR.String())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no PTR record for %s", addr)
	}
	return names, nil
}

// reverseName is the in-addr.arpa (or ip6.arpa) name of an address.
func reverseName(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa.", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	var sb strings.Builder
	for i := len(b) - 1; i >= 0; i-- {
		fmt.Fprintf(&sb, "%x.%x.", b[i]&0xf, b[i]>>4)
	}
	return sb.String() + "ip6.arpa."
}

// defaultServerName names the server after its compose or swarm container
// when Docker's embedded DNS (127.0.0.11) answers for it, else after the
// host name (a Kubernetes StatefulSet pod is "<set>-<ordinal>").
func defaultServerName(ctx context.Context, src nameSource) string {
	if usesDockerDNS(src.resolvConf) {
		if ips, err := src.localIPs(); err == nil {
			for _, ip := range ips {
				lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				names, err := src.lookupAddr(lctx, ip.String())
				cancel()
				if err == nil && len(names) > 0 {
					if n := nameFromPTR(names[0]); n != "" {
						return n
					}
				}
			}
		}
	}
	if h, err := src.hostname(); err == nil {
		if n := sanitizeName(h); n != "" {
			return n
		}
	}
	return "rethinkdb"
}

func usesDockerDNS(resolvConf string) bool {
	f, err := os.Open(resolvConf)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 2 && fields[0] == "nameserver" && fields[1] == "127.0.0.11" {
			return true
		}
	}
	return false
}

// localIPs are this machine's non-loopback unicast addresses.
func localIPs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := p.Addr().Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			continue
		}
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// reachablePeers runs discovery for at most wait and returns the cluster
// endpoints of peers that accept a TCP connection, leaving out this
// machine's own addresses. It returns as soon as a round finds some.
func reachablePeers(ctx context.Context, m *discovery.Manager, wait time.Duration, self []netip.Addr,
	probe func(context.Context, netip.AddrPort) error, log *slog.Logger) []string {
	if wait <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case peers, ok := <-m.Updates():
			if !ok {
				return nil
			}
			if eps := probePeers(ctx, peers, self, probe); len(eps) > 0 {
				return eps
			}
			log.Debug("no discovered peer answers yet", "peers", len(peers))
		}
	}
}

func probePeers(ctx context.Context, peers []discovery.Peer, self []netip.Addr,
	probe func(context.Context, netip.AddrPort) error) []string {
	var out []string
	for _, p := range peers {
		for _, a := range p.Addrs {
			var ips []netip.Addr
			if ip, err := netip.ParseAddr(a); err == nil {
				ips = []netip.Addr{ip.Unmap()}
			} else if got, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", a); err == nil {
				ips = got
			}
			for _, ip := range ips {
				ip = ip.Unmap()
				if ip.IsLoopback() || slices.Contains(self, ip) {
					continue
				}
				ep := netip.AddrPortFrom(ip, uint16(p.Port))
				if probe(ctx, ep) == nil && !slices.Contains(out, ep.String()) {
					out = append(out, ep.String())
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// readRethinkConfig reads a rethinkdb config file the way rethinkdb 2.4.4
// does (options::parse_config_file in
// src/clustering/administration/main/options.cc): '#' starts a comment
// anywhere, trailing blanks go, a line is "name", "name=value" or
// "name = value", and a repeated name adds a value. It returns the values by
// name (without "--"); rethinkdb itself reports malformed lines.
func readRethinkConfig(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rethinkdb --config-file: %w", err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		end := strings.IndexFunc(line, func(c rune) bool { return c == '=' || c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r' })
		if end < 0 {
			out[line] = append(out[line], "")
			continue
		}
		name, rest := line[:end], strings.TrimSpace(line[end:])
		if name == "" || !strings.HasPrefix(rest, "=") {
			continue
		}
		out[name] = append(out[name], strings.TrimSpace(rest[1:]))
	}
	return out, nil
}

// writePasswordConfig writes a 0600 config file holding initial-password
// (after the lines of the user's own config file, if any).
func writePasswordConfig(dir, userConfig, password string) (string, error) {
	// What rethinkdb's config file parser would change: a line break ends
	// the value, '#' starts a comment anywhere, outer blanks are trimmed.
	if strings.ContainsAny(password, "\r\n#") || strings.TrimSpace(password) != password {
		return "", errors.New("the password holds a line break, a '#' or outer blanks, which a rethinkdb config " +
			"file cannot carry; choose another, or set it in rethinkdb.users after the start")
	}
	var b strings.Builder
	if userConfig != "" {
		data, err := os.ReadFile(userConfig)
		if err != nil {
			return "", fmt.Errorf("rethinkdb --config-file: %w", err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k, _, _ := strings.Cut(strings.TrimSpace(line), "="); strings.TrimSpace(k) == "initial-password" {
				continue // ours wins
			}
			b.WriteString(line + "\n")
		}
	}
	b.WriteString("initial-password=" + password + "\n")
	f, err := os.CreateTemp(dir, "rethinkdb-agent-*.conf")
	if err != nil {
		return "", fmt.Errorf("password config file: %w", err)
	}
	if err := f.Chmod(0o600); err == nil {
		_, err = f.WriteString(b.String())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("password config file: %w", err)
	}
	return f.Name(), nil
}

// replaceArg replaces the value of option name (or alias) in args.
func replaceArg(args []string, value string, names ...string) []string {
	out := slices.Clone(args)
	for i := 0; i+1 < len(out); i++ {
		if slices.Contains(names, out[i]) {
			out[i+1] = value
		}
	}
	return out
}

func argValue(args []string, names ...string) string {
	for i := 0; i+1 < len(args); i++ {
		if slices.Contains(names, args[i]) {
			return args[i+1]
		}
	}
	return ""
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		n, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && n == name {
			return true
		}
	}
	return false
}

// execMain is `rethinkdb-agent exec`; it returns the process exit code.
func execMain(args []string, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprint(stderr, execUsage)
		return 0
	}
	// Signals are caught from the very start: one that arrives before the
	// child runs stops the start.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	code, err := execRun(context.Background(), args, sigs, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "rethinkdb-agent exec:", err)
	}
	return code
}

// execRun prepares rethinkdb's command line, runs it and the agent loop, and
// returns rethinkdb's exit code. Errors before the child starts give 1.
func execRun(ctx context.Context, args []string, sigs <-chan os.Signal, stderr io.Writer) (int, error) {
	opts, agentArgs, child, err := splitExecArgs(args)
	if err != nil {
		return 2, err
	}
	var conf map[string][]string
	if cf := argValue(child[1:], "--config-file"); cf != "" {
		if conf, err = readRethinkConfig(cf); err != nil {
			return 2, err
		}
	}
	rdb, err := parseRethinkArgs(child[1:], conf)
	if err != nil {
		return 2, err
	}
	if rdb.proxy {
		return 2, errors.New("exec runs a rethinkdb server, not a proxy")
	}
	// Defaults that only make sense beside a child we started ourselves.
	var pre []string
	if !hasFlag(agentArgs, "node") && os.Getenv(envName("node")) == "" {
		pre = append(pre, "--node", net.JoinHostPort(rdb.nodeHost(), strconv.Itoa(rdb.driverPort)))
	}
	if !hasFlag(agentArgs, "proxy-bind") && os.Getenv(envName("proxy-bind")) == "" {
		// The proxy must be reachable from the other containers, which
		// learn its addresses from it: loopback-only would advertise
		// 127.0.0.1, an address that leads each of them to itself.
		pre = append(pre, "--proxy-bind", "all")
	}
	if !hasFlag(agentArgs, "rethinkdb") && os.Getenv(envName("rethinkdb")) == "" {
		pre = append(pre, "--rethinkdb", child[0])
	}
	agentArgs = append(pre, agentArgs...)
	c, err := parseRun(agentArgs, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	log := newLogger(c, stderr).With("component", "exec")
	password, err := rethink.LoadPassword(c.passwordFile, envPrefix+"PASSWORD")
	if err != nil {
		return 1, err
	}

	// A signal during the preparation (DNS, the join round) ends it at once.
	prepCtx, cancelPrep := context.WithCancel(ctx)
	defer cancelPrep()
	var early os.Signal
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case early = <-sigs:
			cancelPrep()
		case <-prepCtx.Done():
		}
	}()
	stopped := func() (int, error) {
		cancelPrep()
		<-watched
		if early != nil {
			return 128 + int(early.(syscall.Signal)), fmt.Errorf("stopped by %v before rethinkdb started", early)
		}
		return 0, nil
	}

	argv := slices.Clone(child[1:])
	if len(argv) > 0 && argv[0] == "serve" {
		// `rethinkdb serve` knows no --server-name or --server-tag (its
		// options have no server section: get_rethinkdb_serve_options in
		// command_line.cc) and never creates its data directory. The
		// default form takes every serve option plus those, creates a
		// missing directory and serves an existing one as serve does.
		argv = argv[1:]
		log.Info("running 'rethinkdb ARGS' instead of 'rethinkdb serve ARGS': serve accepts no --server-name and never creates its data directory")
	}
	name := rdb.serverName
	if name == "" {
		name = opts.serverName
		if name == "" {
			name = defaultServerName(prepCtx, systemNameSource())
		}
		argv = append(argv, "--server-name", name)
	}
	if opts.dataRoot != "" && !rdb.has["--directory"] {
		dir := filepath.Join(opts.dataRoot, name)
		if err := os.MkdirAll(opts.dataRoot, 0o755); err != nil {
			return 1, fmt.Errorf("--data-root: %w", err)
		}
		argv = append(argv, "--directory", dir)
	}
	var confFile string
	if password != "" {
		dir := opts.dataRoot // scratch images may have no /tmp
		if st, err := os.Stat(os.TempDir()); err == nil && st.IsDir() {
			dir = os.TempDir()
		}
		confFile, err = writePasswordConfig(dir, argValue(argv, "--config-file"), password)
		if err != nil {
			return 1, err
		}
		defer os.Remove(confFile)
		if rdb.has["--config-file"] {
			argv = replaceArg(argv, confFile, "--config-file")
		} else {
			argv = append(argv, "--config-file", confFile)
		}
	}
	var added []string // the --join values exec added
	if !rdb.has["--join"] {
		m, err := c.disc.manager(log)
		if err != nil {
			return 1, err
		}
		joins := findJoins(prepCtx, m, opts.joinWait, log)
		if len(joins) == 0 {
			log.Info("no peer reachable: starting alone; the agent bridges later")
		} else {
			log.Info("joining reachable peers at start", "joins", joins)
		}
		for _, j := range joins {
			argv = append(argv, "--join", j)
		}
		added = joins
	}
	if code, err := stopped(); err != nil {
		return code, err
	}

	// joined is closed once rethinkdb is past its --join peers: it logged a
	// connection to another server, or it serves its driver port.
	joined := make(chan struct{})
	var joinedOnce sync.Once
	markJoined := func() { joinedOnce.Do(func() { close(joined) }) }
	start := func(argv []string) (*exec.Cmd, <-chan error, error) {
		cmd := exec.Command(child[0], argv...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if len(added) > 0 {
			// network_logger.cc logs "Connected to server …" (notice
			// level, stdout) as soon as a peer connects, which ends the
			// initial join; a big server may take longer to serve.
			cmd.Stdout = &lineWatcher{w: os.Stdout, prefix: "Connected to ", found: markJoined}
			// rethinkdb's helper process may hold the pipe a moment longer.
			cmd.WaitDelay = 5 * time.Second
		}
		// Its own process group: rethinkdb forks a helper with the same
		// command line, and the signal is meant for both.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return nil, nil, fmt.Errorf("start %s: %w", child[0], err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		return cmd, exited, nil
	}
	log.Info("starting rethinkdb", "binary", child[0], "server_name", name, "node", c.node)
	cmd, exited, err := start(argv)
	if err != nil {
		return 127, err
	}

	agentCtx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		if err := runCmd(agentCtx, agentArgs, stderr); err != nil {
			// The database matters more than its agent: keep it serving.
			log.Error("the agent loop stopped; rethinkdb keeps running without it", "err", err)
		}
	}()
	if confFile != "" {
		go removeWhenServing(agentCtx, confFile, net.JoinHostPort(rdb.nodeHost(), strconv.Itoa(rdb.driverPort)))
	}

	// rethinkdb started with --join serves nothing until it has connected to
	// one of the join addresses, and it retries them for ever
	// (initial_joiner_t, src/clustering/administration/main/initial_join.cc,
	// no timeout from serve.cc; logs/join-unreachable.log). A peer that
	// answered the probe may be gone by now or refuse the handshake, so when
	// rethinkdb neither logs a connection nor serves within joinTimeout it
	// is restarted without the joins exec added; the agent bridges it later.
	var joinTimer <-chan time.Time
	serving := (<-chan struct{})(joined)
	if len(added) > 0 {
		t := time.NewTimer(joinTimeout)
		defer t.Stop()
		joinTimer = t.C
		go func() {
			if waitServing(agentCtx, net.JoinHostPort(rdb.nodeHost(), strconv.Itoa(rdb.driverPort))) {
				markJoined()
			}
		}()
	}
	var waitErr error
	signalled, restarting := false, false
	for done := false; !done; {
		select {
		case s := <-sigs:
			log.Info("forwarding signal to rethinkdb", "signal", s.String())
			_ = syscall.Kill(-cmd.Process.Pid, s.(syscall.Signal))
			signalled = true
			stopAgent() // the agent stops any proxy it runs
		case <-serving:
			joinTimer, serving = nil, nil
		case <-joinTimer:
			joinTimer = nil
			log.Warn("rethinkdb connected to none of its --join peers in time; restarting it alone, the agent bridges it later",
				"joins", added, "join_timeout", joinTimeout)
			restarting = true
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		case waitErr = <-exited:
			if !restarting || signalled {
				done = true
				break
			}
			restarting = false
			argv = withoutJoins(argv, added)
			log.Info("starting rethinkdb without --join", "binary", child[0], "server_name", name)
			if cmd, exited, err = start(argv); err != nil {
				stopAgent()
				<-agentDone
				return 127, err
			}
		}
	}
	stopAgent()
	<-agentDone
	return exitCode(cmd.ProcessState, waitErr), nil
}

// findJoins is the join round before the start: the cluster endpoints of
// discovered peers, other than this machine, that accept a connection.
// Tests replace it.
var findJoins = func(ctx context.Context, m *discovery.Manager, wait time.Duration, log *slog.Logger) []string {
	self, _ := localIPs()
	return reachablePeers(ctx, m, wait, self, func(ctx context.Context, ep netip.AddrPort) error {
		d := net.Dialer{Timeout: time.Second}
		conn, err := d.DialContext(ctx, "tcp", ep.String())
		if err == nil {
			conn.Close()
		}
		return err
	}, log)
}

// joinTimeout is how long rethinkdb may wait for the --join peers exec added
// before exec restarts it without them.
var joinTimeout = 60 * time.Second

// waitServing reports true once something accepts connections at addr, or
// false when ctx ends first.
func waitServing(ctx context.Context, addr string) bool {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		d := net.Dialer{Timeout: time.Second}
		if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
			c.Close()
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// lineWatcher passes everything to w and calls found once a line starts
// with prefix.
type lineWatcher struct {
	w      io.Writer
	prefix string
	found  func()
	line   []byte // the start of the current line, up to len(prefix)
}

func (l *lineWatcher) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			l.line = l.line[:0]
			continue
		}
		if len(l.line) < len(l.prefix) {
			l.line = append(l.line, b)
			if string(l.line) == l.prefix {
				l.found()
			}
		}
	}
	return l.w.Write(p)
}

// withoutJoins drops the "--join ADDR" pairs whose ADDR is in added.
func withoutJoins(argv, added []string) []string {
	var out []string
	for i := 0; i < len(argv); i++ {
		if argv[i] == "--join" && i+1 < len(argv) && slices.Contains(added, argv[i+1]) {
			i++
			continue
		}
		out = append(out, argv[i])
	}
	return out
}

// removeWhenServing deletes the password config file once rethinkdb serves
// clients: it has read its options long before.
func removeWhenServing(ctx context.Context, file, driver string) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		d := net.Dialer{Timeout: time.Second}
		if c, err := d.DialContext(ctx, "tcp", driver); err == nil {
			c.Close()
			os.Remove(file)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// exitCode is the child's exit code, 128+N when signal N killed it (as a
// shell reports it).
func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return 1
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
