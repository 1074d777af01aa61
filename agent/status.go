package agent

import (
	"fmt"
	"strings"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// Record is one entry of the audit trail: a change the agent made (or, under
// the report policy, would have made) and the bridges it ran. Kind is an
// ActionKind, "would_"+ActionKind under the report policy, or one of
// bridge_started, bridge_succeeded and bridge_failed.
type Record struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// ID is the UUID of the object changed, or the proxy's id for a bridge.
	ID     string `json:"id,omitempty"`
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
	// Issue is the current_issues type that caused a collision fix.
	Issue  string `json:"issue,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Took is, for bridge_succeeded, the time from starting the proxy to a
	// whole mesh.
	Took   time.Duration `json:"took_ns,omitempty"`
	DryRun bool          `json:"dry_run,omitempty"`
}

// Record kinds for bridges.
const (
	KindBridgeStarted   = "bridge_started"
	KindBridgeSucceeded = "bridge_succeeded"
	KindBridgeFailed    = "bridge_failed"
)

// PeerStatus is one discovered peer as the agent classified it.
type PeerStatus struct {
	Key       string    `json:"key"`
	Source    string    `json:"source"`
	Endpoints []string  `json:"endpoints"`
	State     PeerState `json:"state"`
	ServerID  string    `json:"server_id,omitempty"`
	Reason    string    `json:"reason,omitempty"`
}

// Status is a snapshot of what the agent knows and did.
type Status struct {
	// Started is when the agent was created; LastReconcile when a reconcile
	// pass last read (or failed to read) the node.
	Started       time.Time `json:"started"`
	LastReconcile time.Time `json:"last_reconcile,omitzero"`
	// Discovered is set once discovery has delivered its first peer set.
	Discovered bool           `json:"discovered"`
	NodeError  string         `json:"node_error,omitempty"`
	View       *rethink.View  `json:"view,omitempty"`
	Peers      []PeerStatus   `json:"peers"`
	Proxy      string         `json:"proxy,omitempty"`
	Recent     []Record       `json:"recent"`
	Counts     map[string]int `json:"counts"`
}

// maxRecords is the size of the audit ring buffer kept in the status.
const maxRecords = 100

// ops is the agent's operator-facing state besides Status: its metrics and
// what health checks need. Guarded by Agent.mu.
type ops struct {
	metrics     *metrics
	bridgeStart time.Time // of the bridge running now
	staleAfter  time.Duration
}

// initOps is called by New.
func (a *Agent) initOps() {
	a.ops = ops{
		metrics: newMetrics(),
		// The longest a healthy loop goes without reading the node: a pass
		// that bridges waits up to MergeTimeout for the mesh, then resolves
		// and stops the proxy (up to 30s), and dials time out after ~5s.
		staleAfter: 3*a.cfg.Interval + a.cfg.MergeTimeout + 45*time.Second,
	}
	a.status.Started = a.cfg.Now()
}

// Status returns a copy of the current status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	s.Peers = append([]PeerStatus(nil), s.Peers...)
	s.Recent = append([]Record(nil), s.Recent...)
	counts := make(map[string]int, len(s.Counts))
	for k, v := range s.Counts {
		counts[k] = v
	}
	s.Counts = counts
	return s
}

// Healthy reports whether the reconcile loop is alive: it read (or tried to
// read) the node recently. It says nothing about the node or the cluster;
// see NotReady for that.
func (a *Agent) Healthy() error {
	a.mu.Lock()
	last, started, stale := a.status.LastReconcile, a.status.Started, a.ops.staleAfter
	a.mu.Unlock()
	now := a.cfg.Now()
	if last.IsZero() {
		if since := now.Sub(started); since > stale {
			return fmt.Errorf("no reconcile pass in the %s since the agent started", since.Round(time.Second))
		}
		return nil // starting
	}
	if since := now.Sub(last); since > stale {
		return fmt.Errorf("the reconcile loop has not run for %s (limit %s)", since.Round(time.Second), stale)
	}
	return nil
}

// NotReady returns why the node is not ready, or nothing when it is: the
// node is reachable, discovery has reported, the node's cluster holds every
// reachable discovered peer (none is foreign or returning) and no critical
// issue is open.
func (a *Agent) NotReady() []string {
	var why []string
	if err := a.Healthy(); err != nil {
		why = append(why, "agent: "+err.Error())
	}
	s := a.Status()
	switch {
	case s.NodeError != "":
		why = append(why, "node unreachable: "+s.NodeError)
	case s.View == nil:
		why = append(why, "node: not read yet")
	}
	if !s.Discovered {
		why = append(why, "discovery: no peer set yet")
	}
	for _, p := range s.Peers {
		if p.State == PeerForeign || p.State == PeerReturning {
			why = append(why, fmt.Sprintf("peer %s is outside the cluster (%s)", p.Key, p.State))
		}
	}
	if s.View != nil {
		for _, is := range s.View.Issues {
			if is.Critical {
				desc, _, _ := strings.Cut(is.Description, "\n")
				why = append(why, fmt.Sprintf("critical issue %s: %s", is.Type, desc))
			}
		}
	}
	return why
}

func (a *Agent) setNodeStatus(v rethink.View, err error) {
	now := a.cfg.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.LastReconcile = now
	if err != nil {
		a.status.NodeError = err.Error()
		a.status.View = nil
		return
	}
	a.status.NodeError = ""
	a.status.View = &v
}

// setDiscovered notes that discovery delivered a peer set.
func (a *Agent) setDiscovered() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Discovered = true
}

func (a *Agent) setPeerStatus(pvs []peerView) {
	out := make([]PeerStatus, 0, len(pvs))
	for _, pv := range pvs {
		eps := make([]string, 0, len(pv.Endpoints))
		for _, ep := range pv.Endpoints {
			eps = append(eps, hostPort(ep))
		}
		out = append(out, PeerStatus{Key: pv.Peer.Key(), Source: pv.Peer.Source, Endpoints: eps,
			State: pv.State, ServerID: pv.ServerID, Reason: pv.Reason})
	}
	sortPeers(out)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Peers = out
}

func (a *Agent) setProxy(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Proxy = id
	if id != "" {
		a.ops.metrics.proxies.Set(1)
	} else {
		a.ops.metrics.proxies.Set(0)
	}
}

// record appends r to the audit ring buffer and counts it in the metrics.
func (a *Agent) record(r Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.ops.metrics
	switch r.Kind {
	case KindBridgeStarted:
		m.bridgesStarted.Inc()
		a.ops.bridgeStart = r.Time
	case KindBridgeSucceeded:
		m.bridgesSucceeded.Inc()
		if r.Took == 0 && !a.ops.bridgeStart.IsZero() {
			r.Took = r.Time.Sub(a.ops.bridgeStart)
		}
		m.mergeDuration.Observe(r.Took.Seconds())
	case KindBridgeFailed:
		m.bridgesFailed.Inc()
	default:
		if !r.DryRun && r.Issue != "" {
			m.collisions.WithLabelValues(r.Issue, r.Kind).Inc()
		}
	}
	a.status.Recent = append(a.status.Recent, r)
	if n := len(a.status.Recent); n > maxRecords {
		a.status.Recent = a.status.Recent[n-maxRecords:]
	}
	if a.status.Counts == nil {
		a.status.Counts = map[string]int{}
	}
	a.status.Counts[r.Kind]++
}

// serverList names a view's servers with their UUIDs, for the audit trail:
// "server_1 (uuid), server_2 (uuid)".
func serverList(v rethink.View) string {
	parts := make([]string, 0, len(v.Servers))
	for _, s := range v.Servers {
		parts = append(parts, fmt.Sprintf("%s (%s)", s.Name, s.ID))
	}
	return strings.Join(parts, ", ")
}
