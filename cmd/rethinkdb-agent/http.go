package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rethinkdb-agent/rethinkdb-agent/agent"
	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// defaultHTTPAddr is where the operator endpoints listen unless --http says
// otherwise. Loopback only, so that nothing is exposed by default, yet a
// Docker HEALTHCHECK and `rethinkdb-agent status` inside the container work
// out of the box. Port 29080 is none of RethinkDB's (28015, 29015, 8080,
// and those plus a small --port-offset). Kubernetes probes and Prometheus
// need --http :29080.
const defaultHTTPAddr = "127.0.0.1:29080"

// httpOff disables the listener.
const httpOff = "off"

// defaultRecent is how many audit records /status returns by default.
const defaultRecent = 20

// httpConfig is the status listener's part of the command line.
type httpConfig struct {
	addr string
}

func (h *httpConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&h.addr, "http", defaultHTTPAddr,
		"`ADDR` to serve /healthz, /readyz, /status and /metrics on; \"off\" (or empty) disables it")
}

// enabled reports whether the listener runs.
func (h httpConfig) enabled() bool { return h.addr != "" && h.addr != httpOff }

// agentView is what the handlers read from the agent; *agent.Agent
// satisfies it.
type agentView interface {
	Status() agent.Status
	Healthy() error
	NotReady() []string
}

// peerSnapshot is what /status reads from discovery; *discovery.Manager
// satisfies it.
type peerSnapshot interface {
	Snapshot() []discovery.PeerState
}

// serveHTTP serves the operator endpoints until ctx ends. Failing to listen
// on the default address only disables them with a warning (several agents
// on one host cannot all have it); an address given with --http must work.
func serveHTTP(ctx context.Context, hc httpConfig, a *agent.Agent, m *discovery.Manager, log *slog.Logger) error {
	if !hc.enabled() {
		return nil
	}
	reg := prometheus.NewRegistry()
	if err := a.RegisterMetrics(reg); err != nil {
		return err
	}
	reg.MustRegister(agent.DiscoveryCollector(m), agent.BuildInfo(version),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", hc.addr)
	if err != nil {
		if hc.addr == defaultHTTPAddr {
			log.Warn("cannot listen on the default HTTP address; /healthz, /readyz, /status and /metrics are off (set --http)",
				"addr", hc.addr, "err", err)
			return nil
		}
		return fmt.Errorf("--http %s: %w", hc.addr, err)
	}
	srv := &http.Server{Handler: newHandler(a, m, reg, log), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving /healthz, /readyz, /status and /metrics", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newHandler routes the operator endpoints.
func newHandler(a agentView, peers peerSnapshot, gatherer prometheus.Gatherer, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.Healthy(); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		why := a.NotReady()
		code := http.StatusOK
		if len(why) > 0 {
			code = http.StatusServiceUnavailable
		}
		if wantsJSON(r) {
			writeJSON(w, code, readiness{Ready: len(why) == 0, Reasons: why})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		if len(why) == 0 {
			fmt.Fprintln(w, "ready")
			return
		}
		fmt.Fprintln(w, "not ready:")
		for _, s := range why {
			fmt.Fprintln(w, "- "+s)
		}
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		n := defaultRecent
		if q := r.URL.Query().Get("recent"); q != "" {
			v, err := strconv.Atoi(q)
			if err != nil || v < 0 {
				http.Error(w, fmt.Sprintf("recent=%q: want a number of records >= 0", q), http.StatusBadRequest)
				return
			}
			n = v
		}
		var snap []discovery.PeerState
		if peers != nil {
			snap = peers.Snapshot()
		}
		writeJSON(w, http.StatusOK, agentStatusDoc(a, snap, n))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError),
	}))
	return mux
}

func wantsJSON(r *http.Request) bool {
	return r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// readiness is /readyz?format=json.
type readiness struct {
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons,omitempty"`
}

// statusDoc is the /status document; `rethinkdb-agent status` reads it, and
// builds one from the node alone when no agent answers (Source "node").
type statusDoc struct {
	Source    string         `json:"source"` // "agent", or "node" when read from the node directly
	Agent     *agentInfo     `json:"agent,omitempty"`
	Ready     *bool          `json:"ready,omitempty"`
	NotReady  []string       `json:"not_ready,omitempty"`
	Node      *serverInfo    `json:"node,omitempty"` // the local server
	NodeError string         `json:"node_error,omitempty"`
	Servers   []serverInfo   `json:"servers"`
	Proxies   []string       `json:"proxies,omitempty"` // proxies connected to the cluster, any owner
	Peers     []peerInfo     `json:"peers"`
	Discovery []discovered   `json:"discovery"` // per provider, with first and last seen
	Issues    []issueInfo    `json:"issues"`
	Proxy     string         `json:"proxy,omitempty"` // the proxy this agent runs now
	Recent    []agent.Record `json:"recent"`
	Counts    map[string]int `json:"counts,omitempty"`
}

type agentInfo struct {
	Version       string    `json:"version"`
	Started       time.Time `json:"started"`
	LastReconcile time.Time `json:"last_reconcile,omitzero"`
	Healthy       bool      `json:"healthy"`
	HealthError   string    `json:"health_error,omitempty"`
	Discovered    bool      `json:"discovered"`
}

type serverInfo struct {
	ID                 string    `json:"id"`
	Name               string    `json:"name"`
	Hostname           string    `json:"hostname,omitempty"`
	Tags               []string  `json:"tags,omitempty"`
	CanonicalAddresses []string  `json:"canonical_addresses,omitempty"`
	ClusterPort        int       `json:"cluster_port,omitempty"`
	DriverPort         int       `json:"driver_port,omitempty"`
	ConnectedTo        []string  `json:"connected_to"`
	TimeStarted        time.Time `json:"time_started,omitzero"`
}

// peerInfo is a classified peer with, when discovery knows it under the
// same key, when it was first and last reported by any provider.
type peerInfo struct {
	agent.PeerStatus
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
}

type discovered struct {
	Provider  string    `json:"provider"`
	Key       string    `json:"key"`
	Addrs     []string  `json:"addrs"`
	Port      int       `json:"port"`
	ServerID  string    `json:"server_id,omitempty"`
	Cluster   string    `json:"cluster,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

type issueInfo struct {
	ID          string   `json:"id"`
	Type        string   `json:"type"`
	Critical    bool     `json:"critical"`
	Description string   `json:"description"`
	Name        string   `json:"name,omitempty"`
	IDs         []string `json:"ids,omitempty"`
}

// agentStatusDoc builds /status from the agent and discovery, with the last
// n audit records.
func agentStatusDoc(a agentView, snap []discovery.PeerState, n int) statusDoc {
	s := a.Status()
	why := a.NotReady()
	ready := len(why) == 0
	info := &agentInfo{Version: versionString(), Started: s.Started, LastReconcile: s.LastReconcile, Healthy: true,
		Discovered: s.Discovered}
	if err := a.Healthy(); err != nil {
		info.Healthy, info.HealthError = false, err.Error()
	}
	d := statusDoc{Source: "agent", Agent: info, Ready: &ready, NotReady: why, NodeError: s.NodeError,
		Proxy: s.Proxy, Counts: s.Counts, Servers: []serverInfo{}, Issues: []issueInfo{}}
	if s.View != nil {
		d.setView(*s.View)
	}
	seen := map[string][2]time.Time{} // peer key -> first, last over providers
	d.Discovery = []discovered{}
	for _, st := range snap {
		p := st.Peer
		k := p.Key()
		d.Discovery = append(d.Discovery, discovered{Provider: p.Source, Key: k, Addrs: p.Addrs, Port: p.Port,
			ServerID: p.ServerID, Cluster: p.Cluster, FirstSeen: st.FirstSeen, LastSeen: st.LastSeen})
		fl, ok := seen[k]
		if !ok || st.FirstSeen.Before(fl[0]) {
			fl[0] = st.FirstSeen
		}
		if st.LastSeen.After(fl[1]) {
			fl[1] = st.LastSeen
		}
		seen[k] = fl
	}
	d.Peers = []peerInfo{}
	for _, p := range s.Peers {
		pi := peerInfo{PeerStatus: p}
		if fl, ok := seen[p.Key]; ok {
			pi.FirstSeen, pi.LastSeen = fl[0], fl[1]
		}
		d.Peers = append(d.Peers, pi)
	}
	d.Recent = append([]agent.Record{}, s.Recent[max(0, len(s.Recent)-n):]...)
	return d
}

// setView fills the node, servers, proxies and issues from a cluster view.
func (d *statusDoc) setView(v rethink.View) {
	self := toServerInfo(v.Self)
	d.Node = &self
	d.Servers = make([]serverInfo, 0, len(v.Servers))
	for _, s := range v.Servers {
		d.Servers = append(d.Servers, toServerInfo(s))
	}
	d.Proxies = slices.Clone(v.Proxies)
	d.Issues = make([]issueInfo, 0, len(v.Issues))
	for _, is := range v.Issues {
		d.Issues = append(d.Issues, issueInfo{ID: is.ID, Type: is.Type, Critical: is.Critical,
			Description: is.Description, Name: is.Name, IDs: is.IDs})
	}
}

func toServerInfo(s rethink.Server) serverInfo {
	out := serverInfo{ID: s.ID, Name: s.Name, Hostname: s.Hostname, Tags: s.Tags, ClusterPort: s.ClusterPort,
		DriverPort: s.DriverPort, ConnectedTo: slices.Clone(s.ConnectedTo), TimeStarted: s.TimeStarted}
	if out.ConnectedTo == nil {
		out.ConnectedTo = []string{}
	}
	for _, a := range s.CanonicalAddresses {
		port := a.Port
		if port == 0 {
			port = s.ClusterPort
		}
		out.CanonicalAddresses = append(out.CanonicalAddresses, net.JoinHostPort(a.Host, strconv.Itoa(port)))
	}
	return out
}
