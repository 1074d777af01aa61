package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/node"
)

type command int

const (
	cmdPorcelain command = iota
	cmdServe
	cmdProxy
	cmdCreate
)

// env is what resolving a command line reads from the machine; tests replace it.
type env struct {
	getwd      func() (string, error)
	localAddrs func() ([]net.IP, error)
	warn       func(string) // warnings printed to stderr before the server starts
	say        func(string) // lines printed to stdout before the server starts
}

func osEnv(warn, say func(string)) env {
	return env{
		getwd: os.Getwd,
		localAddrs: func() ([]net.IP, error) {
			addrs, err := net.InterfaceAddrs()
			if err != nil {
				return nil, err
			}
			var ips []net.IP
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					ips = append(ips, n.IP)
				}
			}
			return ips, nil
		},
		warn: warn,
		say:  say,
	}
}

// invocation is a command line resolved: what to run and how.
type invocation struct {
	cmd command
	cfg node.Config
	// newDirectory: the data directory is missing or empty, so this run
	// initialises it.
	newDirectory bool
	pidFile      string
	logFile      string
	daemon       bool
}

// nameRE is the real name_string_t rule for server names and tags.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

const validCharMsg = "Use A-Z, a-z, 0-9, _ and - only"

// parseAll merges the command line, the --config-file and the defaults, as
// the real parse_commands_deep does.
func parseAll(args []string, specs []optionSpec, warn func(string)) (parsed, error) {
	p, err := parseCommandLine(args, specs)
	if err != nil {
		return nil, err
	}
	if path, ok := p.get("--config-file"); ok {
		f, err := parseConfigFile(path, specs, warn)
		if err != nil {
			return nil, err
		}
		p = merge(p, f)
	}
	return merge(p, defaults(specs)), nil
}

// resolve turns parsed options into an invocation, checking values in the
// order the real server does so that the first error is the same one.
func resolve(cmd command, p parsed, argv []string, e env) (*invocation, error) {
	inv := &invocation{cmd: cmd}
	cfg := &inv.cfg
	cfg.Proxy = cmd == cmdProxy
	cfg.Argv = append([]string(nil), argv...)

	if cmd != cmdProxy {
		dir, _ := p.get("--directory")
		abs, err := absPath(dir, e)
		if err != nil {
			return nil, err
		}
		cfg.Directory = abs
	}
	if cmd == cmdPorcelain || cmd == cmdCreate {
		tags := []string{}
		for _, t := range p.all("--server-tag") {
			if !nameRE.MatchString(t) {
				return nil, plainf("--server_tag %s is invalid. (%s)\n", t, validCharMsg)
			}
			tags = appendUnique(tags, t)
		}
		cfg.Tags = appendUnique(tags, "default")
	}
	cfg.InitialPassword, _ = p.get("--initial-password")
	if cfg.InitialPassword == "auto" {
		// As the real server does, while reading its options.
		cfg.InitialPassword = randomPassword()
		e.say("Generated random admin password: " + cfg.InitialPassword)
	}

	if cmd != cmdCreate {
		if err := resolveNetwork(cfg, p, e); err != nil {
			return nil, err
		}
		if dir, ok := p.get("--web-static-directory"); ok {
			abs, err := absPath(dir, e)
			if err != nil {
				return nil, err
			}
			if _, err := os.Stat(abs); err != nil {
				return nil, plainf("ERROR: web assets directory not found '%s'", abs)
			}
		}
	}
	if cmd == cmdPorcelain || cmd == cmdServe {
		if c, ok := p.get("--cores"); ok {
			n, err := singleInt("--cores", c)
			if err != nil {
				return nil, err
			}
			if n <= 0 || n > 2_000_000_000 {
				return nil, plainf("ERROR: number specified for cores to use must be between 1 and %d", 2_000_000_000)
			}
		}
	}
	if cmd != cmdProxy {
		v, _ := p.get("--io-threads")
		n, err := singleInt("--io-threads", v)
		if err != nil {
			return nil, err
		}
		if n <= 0 || n > 1_000_000 {
			return nil, plainf("ERROR: io-threads must be between 1 and %d", 1_000_000)
		}
	}
	if cmd != cmdCreate {
		if v, ok := p.get("--join-delay"); ok {
			secs, err := strconv.ParseUint(v, 10, 64)
			if err != nil || !isDigits(v) {
				return nil, plainf("ERROR: join-delay should be a number, got '%s'", v)
			}
			if secs > math.MaxInt32 {
				return nil, plainf("ERROR: join-delay is too large. Must be at most %d", math.MaxInt32)
			}
		}
		v, _ := p.get("--cluster-reconnect-timeout")
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil || !isDigits(v) {
			return nil, plainf("ERROR: cluster-reconnect-timeout should be a number, got '%s'", v)
		}
		if secs*1000 > math.MaxInt32 {
			return nil, plainf("ERROR: cluster-reconnect-timeout is too large. Must be at most %d", math.MaxInt32/1000)
		}
		cfg.ReconnectTimeout = time.Duration(secs) * time.Second
	}

	if cmd != cmdProxy {
		empty, exists, err := dirState(cfg.Directory)
		if err != nil {
			return nil, err
		}
		switch cmd {
		case cmdServe:
			if !exists {
				return nil, plainf("The directory '%s' does not exist, run 'rethinkdb create -d \"%s\"' and try again.",
					cfg.Directory, cfg.Directory)
			}
		case cmdCreate:
			if exists && !empty {
				return nil, plainf("The path '%s' already exists.  Delete it and try again.", cfg.Directory)
			}
			cfg.CreateOnly = true
		}
		inv.newDirectory = !exists || empty
		if cmd == cmdPorcelain || cmd == cmdCreate {
			name, given := p.get("--server-name")
			if (inv.newDirectory || cmd == cmdCreate) && given && !nameRE.MatchString(name) {
				return nil, plainf("server-name '%s' is invalid.  (%s)\n", name, validCharMsg)
			}
			// For an existing directory the node ignores it, with the
			// real warning.
			cfg.ServerName = name
		}
		if v, ok := p.get("--cache-size"); ok && v != "auto" {
			mb, err := strconv.ParseUint(v, 10, 32)
			if err != nil || !isDigits(v) {
				return nil, plainf("ERROR: cache-size should be a number or 'auto', got '%s'", v)
			}
			cfg.CacheSizeMB = float64(mb)
		}
	}
	if cmd != cmdCreate {
		inv.pidFile, _ = p.get("--pid-file")
		if inv.pidFile != "" {
			if _, err := os.Stat(inv.pidFile); err == nil {
				return nil, plainf("error: The pid-file specified already exists. This might mean that an instance is already running.")
			}
		}
		inv.daemon = p.has("--daemon")
		if err := resolveTLS(cfg, p); err != nil {
			return nil, err
		}
	}
	inv.logFile, _ = p.get("--log-file")
	return inv, nil
}

func resolveNetwork(cfg *node.Config, p parsed, e env) error {
	for _, j := range p.all("--join") {
		hp, err := parseHostPort(p.sourceOf("--join"), "--join", j, defaultClusterPort)
		if err != nil {
			return err
		}
		cfg.Join = append(cfg.Join, hp)
	}
	offset, err := singleIntOpt(p, "--port-offset")
	if err != nil {
		return err
	}
	if cfg.ClusterPort, err = portOpt(p, "--cluster-port", offset); err != nil {
		return err
	}
	if _, err := portOpt(p, "--client-port", offset); err != nil {
		return err
	}
	// Bind addresses: each must be "all", an unspecified address (also
	// "all"), or an address configured on a local interface.
	var local []net.IP
	for _, opt := range []string{"--bind", "--bind-cluster", "--bind-driver", "--bind-http"} {
		for _, b := range p.all(opt) {
			if b == "all" {
				continue
			}
			ip := net.ParseIP(b)
			if ip == nil {
				return plainf("bind ip address '%s' could not be parsed: invalid IP address", b)
			}
			if ip.IsUnspecified() {
				continue
			}
			if local == nil {
				if local, err = e.localAddrs(); err != nil {
					return plainf("No local addresses found to bind to.")
				}
			}
			if !containsIP(local, ip) {
				return plainf("Could not find bind ip address '%s'", ip.String())
			}
		}
	}
	for _, b := range p.all("--bind") {
		if ip := net.ParseIP(b); b == "all" || ip != nil && ip.IsUnspecified() {
			b = "all"
		}
		cfg.Bind = appendUnique(cfg.Bind, b)
	}
	for _, c := range p.all("--canonical-address") {
		hp, err := parseHostPort(p.sourceOf("--canonical-address"), "--canonical-address", c, cfg.ClusterPort)
		if err != nil {
			return err
		}
		if host, port, _ := net.SplitHostPort(hp); port == "0" {
			// --cluster-port 0 and no port given: the node fills in the
			// port it listens on.
			hp = host
		}
		cfg.CanonicalAddresses = append(cfg.CanonicalAddresses, hp)
	}
	if cfg.DriverPort, err = portOpt(p, "--driver-port", offset); err != nil {
		return err
	}
	if cfg.HTTPPort, err = portOpt(p, "--http-port", offset); err != nil {
		return err
	}
	cfg.NoHTTPAdmin = p.has("--no-http-admin")
	return nil
}

func resolveTLS(cfg *node.Config, p parsed) error {
	get := func(n string) string { v, _ := p.get(n); return v }
	hk, hc := get("--http-tls-key"), get("--http-tls-cert")
	if (hk != "") != (hc != "") {
		return plainf("error: --http-tls-key and --http-tls-cert must be specified together.")
	}
	dk, dc, dca := get("--driver-tls-key"), get("--driver-tls-cert"), get("--driver-tls-ca")
	if (dk != "") != (dc != "") {
		return plainf("error: --driver-tls-key and --driver-tls-cert must be specified together.")
	}
	if dca != "" && dk == "" {
		return plainf("error: --driver-tls-key and --driver-tls-cert must be specified if --driver-tls-ca is specified.")
	}
	ck, cc, cca := get("--cluster-tls-key"), get("--cluster-tls-cert"), get("--cluster-tls-ca")
	if ck != "" || cc != "" || cca != "" {
		if ck == "" || cc == "" || cca == "" {
			return plainf("error: --cluster-tls-key, --cluster-tls-cert, and --cluster-tls-ca must be specified together.")
		}
		for _, f := range []string{ck, cc, cca} {
			if _, err := os.Stat(f); err != nil {
				return plainf("error: cannot read TLS file '%s': %v", f, errors.Unwrap(err))
			}
		}
	}
	cfg.ClusterTLSKey, cfg.ClusterTLSCert, cfg.ClusterTLSCA = ck, cc, cca
	if v := get("--tls-min-protocol"); v != "" && v != "TLSv1" && v != "TLSv1.1" && v != "TLSv1.2" {
		return plainf("error: Unrecognized TLS protocol version '%s'.", v)
	}
	return nil
}

func containsIP(list []net.IP, ip net.IP) bool {
	for _, l := range list {
		if l.Equal(ip) {
			return true
		}
	}
	return false
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// singleInt is the real get_single_int: a strict decimal int.
func singleInt(name, v string) (int, error) {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, plainf("Option '%s' (with value '%s') not a valid integer", name, v)
	}
	return int(n), nil
}

func singleIntOpt(p parsed, name string) (int, error) {
	v, _ := p.get(name)
	return singleInt(name, v)
}

// portOpt reads a port and adds --port-offset (0 stays 0: "pick a free port").
func portOpt(p parsed, name string, offset int) (int, error) {
	n, err := singleIntOpt(p, name)
	if err != nil {
		return 0, err
	}
	if n != 0 {
		n += offset
	}
	if n < 0 || n > 65535 {
		v, _ := p.get(name)
		return 0, plainf("Option '%s' (with value '%s', port offset %d) is not a valid port: ports go from 0 to 65535",
			name, v, offset)
	}
	return n, nil
}

// parseHostPort is the real parse_host_and_port: "host", "host:port",
// "[v6]" or "[v6]:port", or a bare IPv6 address; the port must be 1-65535.
// It returns "host:port" (IPv6 in brackets).
func parseHostPort(source, option, value string, defaultPort int) (string, error) {
	bad := &optionError{source: source, option: option,
		msg: fmt.Sprintf("Option '%s' has invalid host and port format '%s'", option, value)}
	join := func(h string, port int) string { return net.JoinHostPort(h, strconv.Itoa(port)) }
	switch strings.Count(value, ":") {
	case 0:
		if value == "" {
			return "", bad
		}
		return join(value, defaultPort), nil
	case 1:
		host, port, _ := strings.Cut(value, ":")
		n := atoi(port)
		if host == "" || n <= 0 || n > 65535 {
			return "", bad
		}
		return join(host, n), nil
	}
	open, closeIdx := strings.Index(value, "["), strings.LastIndex(value, "]")
	if open < 0 || closeIdx < 0 {
		return join(value, defaultPort), nil
	}
	if open != 0 || closeIdx < open {
		return "", bad
	}
	host, rest := value[1:closeIdx], value[closeIdx+1:]
	if rest == "" {
		return join(host, defaultPort), nil
	}
	n := atoi(strings.TrimPrefix(rest, ":"))
	if !strings.HasPrefix(rest, ":") || n <= 0 || n > 65535 {
		return "", bad
	}
	return join(host, n), nil
}

// randomPassword is a random uuid-shaped string, like the real server's.
func randomPassword() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("rethinkdb-sim: no randomness: " + err.Error()) // crypto/rand never fails on Linux
	}
	b[6] = b[6]&0x0f | 0x50 // the real one is a name-based (v5) uuid
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// atoi is C's atoi: the leading digits, 0 when there are none.
func atoi(s string) int {
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' || n > 1_000_000 {
			break
		}
		n = n*10 + int(r-'0')
	}
	return n
}

func absPath(dir string, e env) (string, error) {
	if filepath.IsAbs(dir) {
		return filepath.Clean(dir), nil
	}
	wd, err := e.getwd()
	if err != nil {
		return "", plainf("Could not open directory '%s': %v", dir, err)
	}
	return filepath.Join(wd, dir), nil
}

// dirState reports whether dir exists and whether it is empty.
func dirState(dir string) (empty, exists bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, false, nil
	case err != nil:
		return false, true, plainf("Could not open directory '%s': %v", dir, err)
	}
	return len(entries) == 0, true, nil
}
