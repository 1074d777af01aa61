package agent

import (
	"runtime"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
)

// namespace prefixes every metric name.
const namespace = "rethinkdb_agent"

// metrics are the agent's own counters. They exist from New on, whether or
// not anybody registers them, so that the loop never checks for nil.
// They are fed by record and setProxy (status.go): every counter has an
// entry in the audit trail behind it.
type metrics struct {
	bridgesStarted   prometheus.Counter
	bridgesSucceeded prometheus.Counter
	bridgesFailed    prometheus.Counter
	mergeDuration    prometheus.Histogram
	collisions       *prometheus.CounterVec // type, action
	proxies          prometheus.Gauge
}

func newMetrics() *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	}
	m := &metrics{
		bridgesStarted: counter("bridges_started_total",
			"Temporary proxies started to merge foreign peers into the local cluster."),
		bridgesSucceeded: counter("bridges_succeeded_total",
			"Bridges after which every server was connected to every other."),
		bridgesFailed: counter("bridges_failed_total",
			"Bridge attempts that failed: the proxy did not start, or the mesh was not whole in time."),
		mergeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "merge_duration_seconds",
			Help: "Time from starting a bridge to a whole mesh, for the bridges that succeeded.",
			// A merge through a proxy takes tens of milliseconds on an idle
			// network; --merge-timeout (30s by default) bounds it.
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60},
		}),
		collisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "collisions_resolved_total",
			Help: "Changes made to resolve name collisions, by current_issues type and action.",
		}, []string{"type", "action"}),
		proxies: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "proxy_processes_running",
			Help: "Temporary rethinkdb proxy processes this agent runs now (0 or 1).",
		}),
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.bridgesStarted, m.bridgesSucceeded, m.bridgesFailed, m.mergeDuration,
		m.collisions, m.proxies}
}

// RegisterMetrics registers the agent's metrics with reg: its counters and
// the gauges read from its status at scrape time.
func (a *Agent) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range append(a.ops.metrics.collectors(), statusCollector{a}) {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

var (
	descOpenIssues = prometheus.NewDesc(namespace+"_open_issues",
		"Open rethinkdb.current_issues, by type, as the local node reports them.", []string{"type", "critical"}, nil)
	descForeignPeers = prometheus.NewDesc(namespace+"_foreign_peers",
		"Discovered peers that are reachable and outside the local cluster.", nil, nil)
	descPeersByState = prometheus.NewDesc(namespace+"_peers",
		"Discovered peers as the agent classified them, by state.", []string{"state"}, nil)
	descNodeUp = prometheus.NewDesc(namespace+"_node_up",
		"1 if the last read of the local node's cluster view succeeded.", nil, nil)
	descServers = prometheus.NewDesc(namespace+"_cluster_servers",
		"Servers connected in the local node's cluster.", nil, nil)
	descReady = prometheus.NewDesc(namespace+"_ready",
		"1 if the agent is ready (as /readyz): node reachable, every peer in its cluster, no critical issue.", nil, nil)
	descLastReconcile = prometheus.NewDesc(namespace+"_last_reconcile_timestamp_seconds",
		"Unix time of the last reconcile pass that read the node.", nil, nil)
)

// statusCollector turns the agent's status into gauges at scrape time, so
// that they are never stale relative to /status.
type statusCollector struct{ a *Agent }

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOpenIssues, descForeignPeers, descPeersByState, descNodeUp,
		descServers, descReady, descLastReconcile} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.a.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	up := 0.0
	if s.View != nil {
		up = 1
		gauge(descServers, float64(len(s.View.Servers)))
		type key struct{ typ, critical string }
		open := map[key]int{}
		for _, is := range s.View.Issues {
			crit := "false"
			if is.Critical {
				crit = "true"
			}
			open[key{is.Type, crit}]++
		}
		for k, n := range open {
			gauge(descOpenIssues, float64(n), k.typ, k.critical)
		}
	}
	gauge(descNodeUp, up)
	byState := map[PeerState]int{}
	for _, p := range s.Peers {
		byState[p.State]++
	}
	gauge(descForeignPeers, float64(byState[PeerForeign]))
	for state, n := range byState {
		gauge(descPeersByState, float64(n), string(state))
	}
	ready := 0.0
	if len(c.a.NotReady()) == 0 {
		ready = 1
	}
	gauge(descReady, ready)
	if !s.LastReconcile.IsZero() {
		gauge(descLastReconcile, float64(s.LastReconcile.UnixNano())/1e9)
	}
}

// DiscoverySource is what DiscoveryCollector reads; *discovery.Manager
// satisfies it.
type DiscoverySource interface {
	Snapshot() []discovery.PeerState
	ErrorCounts() map[string]uint64
}

var (
	descDiscovered = prometheus.NewDesc(namespace+"_peers_discovered",
		"Peers each discovery provider reports now (before the cluster fence).", []string{"provider"}, nil)
	descDiscoveryErrors = prometheus.NewDesc(namespace+"_discovery_errors_total",
		"Errors met by each discovery provider.", []string{"provider"}, nil)
)

// DiscoveryCollector exports, per provider, the peers it reports and the
// errors it has met. Every provider of the source has both series, at 0 when
// it has nothing to report.
func DiscoveryCollector(src DiscoverySource) prometheus.Collector { return discoveryCollector{src} }

type discoveryCollector struct{ src DiscoverySource }

func (c discoveryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDiscovered
	ch <- descDiscoveryErrors
}

func (c discoveryCollector) Collect(ch chan<- prometheus.Metric) {
	errs := c.src.ErrorCounts()
	peers := map[string]int{}
	for name := range errs {
		peers[name] = 0
	}
	for _, st := range c.src.Snapshot() {
		// A snapshot entry is one provider's view; Source is that provider.
		for _, name := range strings.Split(st.Peer.Source, ",") {
			peers[name]++
		}
	}
	for name, n := range peers {
		ch <- prometheus.MustNewConstMetric(descDiscovered, prometheus.GaugeValue, float64(n), name)
	}
	for name, n := range errs {
		ch <- prometheus.MustNewConstMetric(descDiscoveryErrors, prometheus.CounterValue, float64(n), name)
	}
}

// BuildInfo returns the rethinkdb_agent_build_info gauge: always 1, with the
// agent's version and the Go version that built it as labels.
func BuildInfo(version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "A metric with a constant 1 value labelled by the agent's version and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}
