package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/agent"
	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

const statusUsage = `Usage: rethinkdb-agent status [flags]

Shows what a running agent knows: its node's servers, the discovered peers,
the open issues and the agent's recent changes. It asks the agent at --http
(default ` + defaultHTTPAddr + `); when no agent answers there it connects to
the node at --node itself and shows the servers and issues.

Exit status: 0 when the agent or else the node answers (with --quiet, a
liveness check for a container HEALTHCHECK without curl); with --check, 0
only when the agent answers and is ready (a readiness check); 1 otherwise;
2 for bad flags.

Flags:
`

type statusConfig struct {
	http         string
	node         string
	user         string
	passwordFile string
	asJSON       bool
	check        bool
	quiet        bool
	recent       int
	timeout      time.Duration
}

func parseStatus(args []string, out io.Writer) (*statusConfig, error) {
	c := &statusConfig{}
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, statusUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.http, "http", defaultHTTPAddr, "`ADDR` of the agent's HTTP listener (or a URL); \"off\" goes to the node directly")
	fs.StringVar(&c.node, "node", "127.0.0.1:28015", "driver `HOST:PORT` of the node, used when no agent answers")
	fs.StringVar(&c.user, "user", "admin", "RethinkDB `USER` for the direct connection")
	fs.StringVar(&c.passwordFile, "password-file", "", "`PATH` of a file holding the user's password (else RETHINKDB_AGENT_PASSWORD)")
	fs.BoolVar(&c.asJSON, "json", false, "print the raw status document")
	fs.BoolVar(&c.check, "check", false, "exit 1 unless the agent answers and is ready")
	fs.BoolVar(&c.quiet, "quiet", false, "print nothing on success: only the exit status tells (a liveness check)")
	fs.IntVar(&c.recent, "recent", defaultRecent, "how many recent actions to show")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "how long to wait for the agent, then for the node")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
	}
	if err := applyEnv(fs, nil); err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(c.node); err != nil {
		return nil, fmt.Errorf("--node %q: want HOST:PORT: %v", c.node, err)
	}
	if c.timeout <= 0 {
		return nil, fmt.Errorf("--timeout %s: must be positive", c.timeout)
	}
	if c.recent < 0 {
		return nil, fmt.Errorf("--recent %d: must be >= 0", c.recent)
	}
	return c, nil
}

// statusMain runs `rethinkdb-agent status` and returns the exit code.
func statusMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseStatus(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "rethinkdb-agent status:", err)
		return 2
	}
	doc, agentErr := fetchAgentStatus(ctx, c)
	if agentErr != nil {
		if c.check {
			fmt.Fprintln(stderr, "rethinkdb-agent status: no agent answers:", agentErr)
			return 1
		}
		var err error
		doc, err = nodeStatus(ctx, c)
		if err != nil {
			fmt.Fprintf(stderr, "rethinkdb-agent status: no agent answers (%v), and the node does not either: %v\n", agentErr, err)
			return 1
		}
		if !c.asJSON && !c.quiet {
			if c.http == "" || c.http == httpOff {
				fmt.Fprintf(stdout, "Read the node %s directly (--http is off).\n\n", c.node)
			} else {
				fmt.Fprintf(stdout, "No agent answers at %s (%v); read the node %s directly.\n\n", c.http, agentErr, c.node)
			}
		}
	}
	switch {
	case c.quiet:
	case c.asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			fmt.Fprintln(stderr, "rethinkdb-agent status:", err)
			return 1
		}
	default:
		printStatus(stdout, doc)
	}
	if c.check && (doc.Ready == nil || !*doc.Ready) {
		return 1
	}
	return 0
}

// statusURL turns --http (ADDR or URL) into the /status URL. A listen
// address without a host, or with an unspecified one, means this host.
func statusURL(addr string, recent int) (string, error) {
	if addr == "" || addr == httpOff {
		return "", errors.New("--http is off")
	}
	base := addr
	if !strings.Contains(addr, "://") {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("--http %q: want HOST:PORT or a URL: %v", addr, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		base = "http://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("--http %q: %v", addr, err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/status"
	u.RawQuery = url.Values{"recent": {fmt.Sprint(recent)}}.Encode()
	return u.String(), nil
}

func fetchAgentStatus(ctx context.Context, c *statusConfig) (statusDoc, error) {
	u, err := statusURL(c.http, c.recent)
	if err != nil {
		return statusDoc{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return statusDoc{}, err
	}
	// One request: no connection is kept for later.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return statusDoc{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return statusDoc{}, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	var doc statusDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return statusDoc{}, fmt.Errorf("GET %s: not a status document: %v", u, err)
	}
	if doc.Source != "agent" {
		return statusDoc{}, fmt.Errorf("GET %s: not a rethinkdb-agent status document", u)
	}
	return doc, nil
}

// nodeStatus reads the node directly: what can be known without an agent.
func nodeStatus(ctx context.Context, c *statusConfig) (statusDoc, error) {
	password, err := rethink.LoadPassword(c.passwordFile, envPrefix+"PASSWORD")
	if err != nil {
		return statusDoc{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, err := readNodeView(ctx, rethink.Options{Address: c.node, User: c.user, Password: password, Timeout: c.timeout})
	if err != nil {
		return statusDoc{}, err
	}
	d := statusDoc{Source: "node", Peers: []peerInfo{}, Discovery: []discovered{}, Recent: []agent.Record{}}
	d.setView(v)
	return d, nil
}

// readNodeView reads the cluster view from a node; tests replace it.
var readNodeView = func(ctx context.Context, opts rethink.Options) (rethink.View, error) {
	cl, err := rethink.Dial(ctx, opts)
	if err != nil {
		return rethink.View{}, err
	}
	defer cl.Close()
	return cl.View(ctx)
}

// printStatus writes the status as tables.
func printStatus(w io.Writer, d statusDoc) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	line := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")) }
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	// Long cells (server lists, reasons) are cut; --json has them whole.
	cut := func(s string) string {
		const width = 60
		if r := []rune(s); len(r) > width {
			return string(r[:width-1]) + "…"
		}
		return dash(s)
	}
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}

	if d.Agent != nil {
		state := "ready"
		if d.Ready == nil || !*d.Ready {
			state = "NOT READY"
		}
		health := "healthy"
		if !d.Agent.Healthy {
			health = "UNHEALTHY: " + d.Agent.HealthError
		}
		line("Agent:", fmt.Sprintf("%s, %s, %s, last reconcile %s", d.Agent.Version, health, state, when(d.Agent.LastReconcile)))
		for _, why := range d.NotReady {
			line("", "- "+why)
		}
	}
	if d.Node != nil {
		line("Node:", fmt.Sprintf("%s (%s)", d.Node.Name, d.Node.ID))
	}
	if d.NodeError != "" {
		line("Node:", "UNREACHABLE: "+d.NodeError)
	}
	if d.Proxy != "" {
		line("Proxy:", d.Proxy+" (running)")
	}

	line()
	line(fmt.Sprintf("SERVERS (%d)", len(d.Servers)))
	line("NAME", "ID", "ADDRESSES", "CONNECTED TO")
	for _, s := range d.Servers {
		line(s.Name, s.ID, dash(strings.Join(s.CanonicalAddresses, ",")), dash(strings.Join(s.ConnectedTo, ",")))
	}
	if len(d.Proxies) > 0 {
		line("proxies:", strings.Join(d.Proxies, ","))
	}

	if d.Source == "agent" {
		line()
		line(fmt.Sprintf("PEERS (%d)", len(d.Peers)))
		line("PEER", "PROVIDERS", "STATE", "ENDPOINTS", "FIRST SEEN", "LAST SEEN")
		for _, p := range d.Peers {
			state := string(p.State)
			if p.Reason != "" {
				state += ": " + p.Reason
			}
			line(p.Key, dash(p.Source), state, dash(strings.Join(p.Endpoints, ",")), when(p.FirstSeen), when(p.LastSeen))
		}
	}

	line()
	line(fmt.Sprintf("ISSUES (%d)", len(d.Issues)))
	if len(d.Issues) > 0 {
		line("TYPE", "CRITICAL", "DESCRIPTION")
		for _, is := range d.Issues {
			desc, _, _ := strings.Cut(is.Description, "\n")
			line(is.Type, fmt.Sprint(is.Critical), cut(desc))
		}
	}

	if d.Source == "agent" {
		line()
		line(fmt.Sprintf("RECENT ACTIONS (%d)", len(d.Recent)))
		if len(d.Recent) > 0 {
			line("TIME", "ACTION", "ID", "BEFORE", "AFTER", "REASON")
			for _, r := range d.Recent {
				kind := r.Kind
				if r.DryRun {
					kind += " (dry run)"
				}
				line(when(r.Time), kind, dash(r.ID), cut(r.Before), cut(r.After), cut(r.Reason))
			}
		}
	}
}
