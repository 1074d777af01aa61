package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rethinkdb-agent/rethinkdb-agent/agent"
	"github.com/rethinkdb-agent/rethinkdb-agent/proxy"
	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

const runUsage = `Usage: rethinkdb-agent run [flags]

Runs beside one rethinkdb node. It discovers the node's peers; when a peer
is outside the node's cluster it bridges the two clusters through a
temporary 'rethinkdb proxy', waits until every server is connected to every
other, resolves the name collisions the merge created (without ever
deleting anything that holds a table or a document) and stops the proxy.

Every flag can also be set in the environment as RETHINKDB_AGENT_<NAME>
(--peers-file is RETHINKDB_AGENT_PEERS_FILE; --peer is RETHINKDB_AGENT_PEERS,
comma-separated). The admin password is read from --password-file or from
RETHINKDB_AGENT_PASSWORD, never from the command line.

Flags:
`

// runConfig is the parsed `run` command line.
type runConfig struct {
	node         string
	rethinkdb    string
	collisions   string
	user         string
	passwordFile string
	disc         discoveryConfig
	http         httpConfig
	logFormat    string
	logLevel     string
	proxyBind    string
	tlsCA        string
	clusterTLS   [3]string // key, cert, ca
	interval     time.Duration
	mergeTimeout time.Duration
	fallback     time.Duration
	rejoinGrace  time.Duration
	proxyLife    time.Duration
}

func parseRun(args []string, out io.Writer) (*runConfig, error) {
	c := &runConfig{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, runUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.node, "node", "127.0.0.1:28015", "driver `HOST:PORT` of the local rethinkdb node")
	fs.StringVar(&c.rethinkdb, "rethinkdb", "rethinkdb", "`PATH` of the rethinkdb binary used to run proxies")
	fs.StringVar(&c.collisions, "collisions", "safe", "collision `POLICY`: safe, merge, rename-all or report")
	fs.StringVar(&c.user, "user", "admin", "RethinkDB `USER` the agent connects as")
	fs.StringVar(&c.passwordFile, "password-file", "", "`PATH` of a file holding the user's password (e.g. a Docker secret)")
	c.disc.register(fs)
	c.http.register(fs)
	fs.StringVar(&c.logFormat, "log-format", "text", "log `FORMAT`: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	fs.StringVar(&c.proxyBind, "proxy-bind", "", "`ADDR` the temporary proxy binds to (default: the host of --node)")
	fs.StringVar(&c.tlsCA, "driver-tls-ca", "", "`PATH` of a CA bundle: connect to the node's driver port over TLS")
	fs.StringVar(&c.clusterTLS[0], "cluster-tls-key", "", "the node's cluster TLS key `PATH`, passed to proxies")
	fs.StringVar(&c.clusterTLS[1], "cluster-tls-cert", "", "the node's cluster TLS certificate `PATH`, passed to proxies")
	fs.StringVar(&c.clusterTLS[2], "cluster-tls-ca", "", "the cluster TLS CA `PATH`, passed to proxies")
	fs.DurationVar(&c.interval, "interval", 2*time.Second, "reconcile `PERIOD`")
	fs.DurationVar(&c.mergeTimeout, "merge-timeout", 30*time.Second, "how long a bridge may take to make a whole mesh")
	fs.DurationVar(&c.fallback, "fallback-after", 10*time.Second, "how long an agent that is not the chooser waits before it acts itself")
	fs.DurationVar(&c.rejoinGrace, "rejoin-grace", 20*time.Second, "how long a returning server is left to the cluster's own reconnection")
	fs.DurationVar(&c.proxyLife, "proxy-max-lifetime", 5*time.Minute, "hard cap on a proxy's lifetime")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
	}
	if err := applyEnv(fs, map[string][]string{"peer": {envPrefix + "PEERS"}}); err != nil {
		return nil, err
	}
	return c, c.validate()
}

func (c *runConfig) validate() error {
	if _, _, err := net.SplitHostPort(c.node); err != nil {
		return fmt.Errorf("--node %q: want HOST:PORT: %v", c.node, err)
	}
	if _, err := agent.ParsePolicy(c.collisions); err != nil {
		return err
	}
	switch c.logFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format %q: want text or json", c.logFormat)
	}
	if _, err := parseLevel(c.logLevel); err != nil {
		return err
	}
	n := 0
	for _, f := range c.clusterTLS {
		if f != "" {
			n++
		}
	}
	if n != 0 && n != 3 {
		return errors.New("--cluster-tls-key, --cluster-tls-cert and --cluster-tls-ca go together")
	}
	if err := c.disc.validate(); err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{"interval": c.interval, "merge-timeout": c.mergeTimeout,
		"fallback-after": c.fallback, "rejoin-grace": c.rejoinGrace, "proxy-max-lifetime": c.proxyLife} {
		if d <= 0 {
			return fmt.Errorf("--%s %s: must be positive", name, d)
		}
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(c *runConfig, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.logLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runCmd(ctx context.Context, args []string, stderr io.Writer) error {
	c, err := parseRun(args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(c, stderr)
	password, err := rethink.LoadPassword(c.passwordFile, envPrefix+"PASSWORD")
	if err != nil {
		return err
	}
	opts := rethink.Options{Address: c.node, User: c.user, Password: password, Timeout: 5 * time.Second, Logger: log}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return fmt.Errorf("--driver-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--driver-tls-ca %s: no PEM certificate in it", c.tlsCA)
		}
		opts.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	nodeHost, _, _ := net.SplitHostPort(c.node)
	proxyBind := c.proxyBind
	if proxyBind == "" {
		proxyBind = nodeHost
		if proxyBind == "localhost" {
			proxyBind = "127.0.0.1"
		}
	}

	manager, err := c.disc.manager(log)
	if err != nil {
		return err
	}
	policy, _ := agent.ParsePolicy(c.collisions)
	a, err := agent.New(agent.Config{
		Policy:   policy,
		NodeHost: nodeHost,
		Dial: func(ctx context.Context) (agent.Cluster, error) {
			return rethink.Dial(ctx, opts)
		},
		StartBridge: func(ctx context.Context, joins []string) (agent.Bridge, error) {
			// rethinkdb's --bind takes an IP or "all", never a name.
			bind, err := resolveBind(ctx, proxyBind)
			if err != nil {
				return nil, err
			}
			return proxy.Start(ctx, proxy.Config{
				Binary:              c.rethinkdb,
				Joins:               joins,
				Bind:                bind,
				ClusterTLSKey:       c.clusterTLS[0],
				ClusterTLSCert:      c.clusterTLS[1],
				ClusterTLSCA:        c.clusterTLS[2],
				InitialPasswordAuto: password != "",
				MaxLifetime:         c.proxyLife,
				Logger:              log.With("component", "proxy"),
			})
		},
		Peers:         manager.Updates(),
		OnSelf:        c.disc.onSelf, // the mDNS provider announces the local server
		Interval:      c.interval,
		MergeTimeout:  c.mergeTimeout,
		FallbackAfter: c.fallback,
		RejoinGrace:   c.rejoinGrace,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	log.Info("rethinkdb-agent starting", "version", versionString(), "node", c.node, "discovery", c.disc.providers,
		"collisions", policy, "cluster", c.disc.cluster)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return manager.Run(ctx) })
	g.Go(func() error { return a.Run(ctx) })
	g.Go(func() error { return serveHTTP(ctx, c.http, a, manager, log) })
	err = g.Wait()
	log.Info("rethinkdb-agent stopped")
	return err
}

// resolveBind turns a --proxy-bind host name into an IP address.
func resolveBind(ctx context.Context, bind string) (string, error) {
	if bind == "all" {
		return bind, nil
	}
	if ip, err := netip.ParseAddr(bind); err == nil {
		return ip.String(), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", bind)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("proxy bind address %q does not resolve: %v", bind, err)
	}
	return ips[0].String(), nil
}
