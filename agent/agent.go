package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// Cluster is the agent's access to its node: reads of the system tables and
// the conditional writes that resolve collisions. *rethink.Client satisfies it.
type Cluster interface {
	View(ctx context.Context) (rethink.View, error)
	RenameDB(ctx context.Context, id, from, to string) (bool, error)
	RenameTable(ctx context.Context, id, from, to string) (bool, error)
	MoveTable(ctx context.Context, id, fromDBID, toDBID string) (bool, error)
	RenameServer(ctx context.Context, id, from, to string) (bool, error)
	DropDBIfEmpty(ctx context.Context, id, name string) (bool, error)
	DropDuplicateDBIfEmpty(ctx context.Context, id, name string) (bool, error)
	Close() error
}

// Bridge is a running temporary proxy. *proxy.Proxy satisfies it.
type Bridge interface {
	ID() string
	Done() <-chan struct{}
	Stop(ctx context.Context) error
}

// Config configures an Agent. Zero durations take the defaults below.
type Config struct {
	Policy Policy
	// NodeHost is the host of the local node (from --node); the proxy joins
	// the local node at this host and the node's cluster port.
	NodeHost string
	// Dial connects to the local node.
	Dial func(ctx context.Context) (Cluster, error)
	// StartBridge starts a proxy that joins every endpoint (IP:port) and
	// returns once it is ready.
	StartBridge func(ctx context.Context, joins []string) (Bridge, error)
	// Peers delivers the merged discovery output.
	Peers <-chan []discovery.Peer
	// OnSelf, if set, is called with the local server whenever its identity
	// or addresses change (the mDNS provider announces them).
	OnSelf func(rethink.Server)

	Interval      time.Duration // reconcile period; default 2s
	MergeTimeout  time.Duration // how long a bridge may take to make a whole mesh; default 30s
	FallbackAfter time.Duration // how long a non-chooser waits before acting itself; default 10s
	RejoinGrace   time.Duration // how long a returning server is left to the cluster's own redial; default 20s
	ResolveDelay  time.Duration // how long collisions that no bridge of ours made wait for their leader; default 2s
	MaxBackoff    time.Duration // cap on the retry delay after a failed bridge; default 1m

	Resolver Resolver // default net.DefaultResolver
	Probe    Prober   // default TCPProbe(time.Second)
	Logger   *slog.Logger
	// Now and Rand are for tests.
	Now  func() time.Time
	Rand func() float64
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Interval, 2*time.Second)
	def(&c.MergeTimeout, 30*time.Second)
	def(&c.FallbackAfter, 10*time.Second)
	def(&c.RejoinGrace, 20*time.Second)
	def(&c.ResolveDelay, 2*time.Second)
	def(&c.MaxBackoff, time.Minute)
	if c.Policy == "" {
		c.Policy = PolicySafe
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Probe == nil {
		c.Probe = TCPProbe(time.Second)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
}

// Agent is the reconcile loop of one rethinkdb-agent.
type Agent struct {
	cfg        Config
	log        *slog.Logger
	classifier *classifier
	cluster    Cluster
	dialErr    string
	runCtx     context.Context
	changes    <-chan struct{} // from the cluster's Watch, when it has one
	stopWatch  context.CancelFunc

	peers        []discovery.Peer
	since        map[string]time.Time // peer key -> first seen foreign or returning
	jitter       time.Duration        // for the current split, drawn once
	failures     int
	nextBridge   time.Time
	collisionsAt time.Time
	lastSelf     string
	reported     map[string]bool // report policy: actions already logged

	mu     sync.Mutex
	status Status
	ops    ops // metrics and health state (status.go)
}

// New returns an agent. cfg.Dial and cfg.StartBridge are required.
func New(cfg Config) (*Agent, error) {
	if cfg.Dial == nil || cfg.StartBridge == nil {
		return nil, errors.New("agent: Config.Dial and Config.StartBridge are required")
	}
	cfg.setDefaults()
	a := &Agent{
		cfg:        cfg,
		log:        cfg.Logger,
		classifier: newClassifier(cfg.Resolver, cfg.Probe),
		since:      map[string]time.Time{},
		reported:   map[string]bool{},
	}
	a.initOps()
	return a, nil
}

// Run reconciles until ctx ends: on every discovery update, every cluster
// change it is told of, and every Interval.
func (a *Agent) Run(ctx context.Context) error {
	a.runCtx = ctx
	defer a.disconnect()
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	for {
		a.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case ps, ok := <-a.cfg.Peers:
			if !ok {
				return nil // discovery has stopped: we are shutting down
			}
			a.peers = ps
			a.setDiscovered()
		case _, ok := <-a.changes:
			if !ok {
				a.changes = nil // the watch ended; the tick remains
			}
		}
	}
}

// connect returns the node connection, dialling it when needed.
func (a *Agent) connect(ctx context.Context) (Cluster, error) {
	if a.cluster != nil {
		return a.cluster, nil
	}
	c, err := a.cfg.Dial(ctx)
	if err != nil {
		if msg := err.Error(); msg != a.dialErr {
			a.log.Warn("cannot reach the local node; retrying", "err", err)
			a.dialErr = msg
		}
		return nil, err
	}
	if a.dialErr != "" {
		a.log.Info("connected to the local node")
	}
	a.dialErr = ""
	a.cluster = c
	// Changefeeds on server_status and current_issues wake the loop at once
	// when the cluster changes; the Interval tick is the fallback.
	if w, ok := c.(interface {
		Watch(context.Context) <-chan struct{}
	}); ok {
		wctx, cancel := context.WithCancel(a.runCtx)
		a.changes, a.stopWatch = w.Watch(wctx), cancel
	}
	return c, nil
}

func (a *Agent) disconnect() {
	if a.stopWatch != nil {
		a.stopWatch()
		a.stopWatch, a.changes = nil, nil
	}
	if a.cluster != nil {
		a.cluster.Close()
		a.cluster = nil
	}
}

func (a *Agent) view(ctx context.Context) (rethink.View, error) {
	c, err := a.connect(ctx)
	if err != nil {
		return rethink.View{}, err
	}
	v, err := c.View(ctx)
	if err != nil {
		a.log.Warn("cannot read the cluster view; reconnecting", "err", err)
		a.disconnect()
	}
	return v, err
}

// reconcile is one observe-decide-act pass.
func (a *Agent) reconcile(ctx context.Context) {
	v, err := a.view(ctx)
	a.setNodeStatus(v, err)
	if err != nil {
		return
	}
	a.announce(v.Self)
	now := a.cfg.Now()
	pvs := a.classifier.classify(ctx, v, a.peers)
	a.setPeerStatus(pvs)
	a.track(now, pvs)

	targets, wait := a.decide(now, v, pvs)
	if len(targets) == 0 || wait > 0 {
		if len(targets) > 0 {
			a.log.Debug("split seen; waiting for the chooser", "wait", wait.Round(time.Millisecond))
		}
		// Collisions already in the cluster need not wait for the split.
		a.resolveStanding(ctx, v, now)
		return
	}
	if err := a.bridge(ctx, v, targets); err != nil {
		a.failures++
		delay := min(a.cfg.MaxBackoff, a.cfg.Interval<<min(a.failures, 10))
		a.nextBridge = a.cfg.Now().Add(delay)
		a.log.Error("bridge failed; will retry", "err", err, "attempt", a.failures, "retry_in", delay)
		a.record(Record{Time: a.cfg.Now(), Kind: KindBridgeFailed, Reason: err.Error()})
		return
	}
	a.failures = 0
	a.nextBridge = time.Time{}
}

// announce tells OnSelf about the local server when it changed.
func (a *Agent) announce(self rethink.Server) {
	if a.cfg.OnSelf == nil {
		return
	}
	key := fmt.Sprint(self.ID, self.Name, self.ClusterPort, self.DriverPort, self.CanonicalAddresses, self.Tags)
	if key != a.lastSelf {
		a.lastSelf = key
		a.cfg.OnSelf(self)
	}
}

// track keeps, per peer, when it was first seen outside the cluster.
func (a *Agent) track(now time.Time, pvs []peerView) {
	outside := map[string]bool{}
	for _, pv := range pvs {
		if pv.State == PeerForeign || pv.State == PeerReturning {
			k := pv.Peer.Key()
			outside[k] = true
			if _, ok := a.since[k]; !ok {
				a.since[k] = now
			}
		}
	}
	for k := range a.since {
		if !outside[k] {
			delete(a.since, k)
		}
	}
	if len(a.since) == 0 {
		a.jitter = 0
	} else if a.jitter == 0 {
		a.jitter = time.Duration(a.cfg.Rand()*float64(a.cfg.Interval/2)) + time.Millisecond
	}
}

// decide returns the peers to bridge now, or how long to wait before this
// agent may act on them.
func (a *Agent) decide(now time.Time, v rethink.View, pvs []peerView) ([]peerView, time.Duration) {
	var targets []peerView
	first := now
	for _, pv := range pvs {
		since, ok := a.since[pv.Peer.Key()]
		switch {
		case pv.State == PeerForeign:
		case pv.State == PeerReturning && ok && now.Sub(since) >= a.cfg.RejoinGrace:
		default:
			continue
		}
		targets = append(targets, pv)
		if ok && since.Before(first) {
			first = since
		}
	}
	if len(targets) == 0 {
		return nil, 0
	}
	wait := a.jitter + a.actDelay(v, pvs, targets) - now.Sub(first)
	return targets, max(wait, a.nextBridge.Sub(now))
}

// actDelay is how long this agent lets others act first: nothing for the
// chooser side's leader, FallbackAfter for the other side, and half of it
// more per rank inside the cluster.
func (a *Agent) actDelay(v rethink.View, pvs []peerView, targets []peerView) time.Duration {
	var delay time.Duration
	if !chooserSide(pvs, targets) {
		delay += a.cfg.FallbackAfter
	}
	return delay + time.Duration(rank(v))*a.cfg.FallbackAfter/2
}

// rank is the position of this agent's server among the cluster's server
// ids: 0 for the leader.
func rank(v rethink.View) int {
	ids := make([]string, 0, len(v.Servers))
	for _, s := range v.Servers {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	return max(0, slices.Index(ids, v.Self.ID))
}

// chooserSide reports whether the local cluster's lowest discovered endpoint
// sorts before every foreign one. Only discovered endpoints count, so that
// agents on both sides compare the same values.
func chooserSide(pvs []peerView, targets []peerView) bool {
	var local, foreign []netip.AddrPort
	for _, pv := range pvs {
		if pv.State == PeerLocal {
			local = append(local, pv.Endpoints...)
		}
	}
	for _, pv := range targets {
		foreign = append(foreign, pv.Endpoints...)
	}
	if len(local) == 0 {
		return false
	}
	slices.SortFunc(local, netip.AddrPort.Compare)
	slices.SortFunc(foreign, netip.AddrPort.Compare)
	return compareEndpoints(local, foreign) < 0
}

// selfJoin is the endpoint at which the proxy joins the local node.
func (a *Agent) selfJoin(ctx context.Context, self rethink.Server) (netip.AddrPort, error) {
	host := a.cfg.NodeHost
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, err := a.cfg.Resolver.LookupNetIP(ctx, "ip4", host)
		if err != nil || len(ips) == 0 {
			return netip.AddrPort{}, fmt.Errorf("cannot resolve the node's host %q: %v", host, err)
		}
		ip = ips[0]
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(self.ClusterPort)), nil
}

// bridge merges the foreign peers into the local cluster through one proxy,
// waits for a whole mesh, resolves the collisions and stops the proxy.
func (a *Agent) bridge(ctx context.Context, v rethink.View, targets []peerView) (err error) {
	self, err := a.selfJoin(ctx, v.Self)
	if err != nil {
		return err
	}
	joins := []string{hostPort(self)}
	var keys []string
	for _, t := range targets {
		joins = append(joins, hostPort(t.Reachable))
		keys = append(keys, t.Peer.Key())
	}
	origin := originOf(v)
	start := a.cfg.Now()
	a.log.Info("bridging foreign peers through a temporary proxy", "peers", keys, "joins", joins,
		"local_servers", len(v.Servers))
	b, err := a.cfg.StartBridge(ctx, joins)
	if err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}
	a.setProxy(b.ID())
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if serr := b.Stop(sctx); serr != nil {
			a.log.Warn("stopping the proxy", "proxy", b.ID(), "err", serr)
		}
		a.setProxy("")
		a.log.Info("proxy stopped", "proxy", b.ID())
	}()
	a.record(Record{Time: start, Kind: KindBridgeStarted, ID: b.ID(), After: strings.Join(joins, " "),
		Reason: "foreign peers " + strings.Join(keys, ", ")})

	mctx, cancel := context.WithTimeout(ctx, a.cfg.MergeTimeout)
	defer cancel()
	merged, err := a.waitMesh(mctx, b, targets)
	if err != nil {
		return fmt.Errorf("mesh not whole after %s: %w", a.cfg.MergeTimeout, err)
	}
	took := a.cfg.Now().Sub(start)
	a.log.Info("mesh is whole", "proxy", b.ID(), "servers", len(merged.Servers), "took", took.Round(time.Millisecond),
		"before", serverList(v), "after", serverList(merged))
	a.record(Record{Time: a.cfg.Now(), Kind: KindBridgeSucceeded, ID: b.ID(), Before: serverList(v),
		After: serverList(merged), Took: took})
	a.resolve(ctx, merged, origin)
	return nil
}

// waitMesh polls the view until every target is a connected server and every
// server is connected to every other, with no non_transitive_error.
func (a *Agent) waitMesh(ctx context.Context, b Bridge, targets []peerView) (rethink.View, error) {
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	why := "no view yet"
	for {
		if v, err := a.view(ctx); err != nil {
			why = err.Error()
		} else if ok, reason := meshWhole(v, targets); ok {
			return v, nil
		} else {
			why = reason
		}
		select {
		case <-ctx.Done():
			return rethink.View{}, errors.New(why)
		case <-b.Done():
			return rethink.View{}, fmt.Errorf("proxy %s exited (%s)", b.ID(), why)
		case <-poll.C:
		}
	}
}

// meshWhole reports whether the bridge did its job, or why not.
func meshWhole(v rethink.View, targets []peerView) (bool, string) {
	owners := endpointOwners(v)
	for _, t := range targets {
		found := false
		for _, ep := range t.Endpoints {
			if _, ok := owners[ep]; ok {
				found = true
			}
		}
		if _, ok := v.Server(t.Peer.ServerID); ok {
			found = true
		}
		if !found {
			return false, fmt.Sprintf("peer %s is not in the cluster yet", t.Peer.Key())
		}
	}
	for _, s := range v.Servers {
		n := 0
		for _, k := range s.ConnectedTo {
			if !strings.HasPrefix(k, "proxy-") {
				n++
			}
		}
		if n != len(v.Servers)-1 {
			return false, fmt.Sprintf("server %s is connected to %d of %d others", s.Name, n, len(v.Servers)-1)
		}
	}
	for _, is := range v.Issues {
		if is.Type == "non_transitive_error" {
			return false, "non_transitive_error: " + is.Description
		}
	}
	return true, ""
}

func hasCollisions(v rethink.View) bool {
	for _, is := range v.Issues {
		switch is.Type {
		case rethink.IssueDBNameCollision, rethink.IssueTableNameCollision, rethink.IssueServerNameCollision:
			return true
		}
	}
	return false
}

// resolveStanding handles collisions that no bridge of this agent made (a
// merge by another agent or by hand): the leader acts after ResolveDelay,
// the others later by rank, in case the leader's agent is gone.
func (a *Agent) resolveStanding(ctx context.Context, v rethink.View, now time.Time) {
	if !hasCollisions(v) {
		a.collisionsAt = time.Time{}
		return
	}
	if a.collisionsAt.IsZero() {
		a.collisionsAt = now
	}
	wait := a.cfg.ResolveDelay + time.Duration(rank(v))*a.cfg.FallbackAfter/2
	if now.Sub(a.collisionsAt) < wait {
		return
	}
	a.resolve(ctx, v, nil)
}

// resolve plans and applies the collision fixes, or only logs them under the
// report policy.
func (a *Agent) resolve(ctx context.Context, v rethink.View, origin *Origin) {
	actions := Plan(a.cfg.Policy, v, origin)
	if len(actions) == 0 {
		return
	}
	if a.cfg.Policy == PolicyReport {
		for _, act := range actions {
			if k := act.String(); !a.reported[k] {
				a.reported[k] = true
				a.log.Warn("collision left alone (--collisions=report)", "would", act.Kind, "id", act.ID,
					"before", act.From, "after", after(act), "issue", act.Issue, "reason", act.Reason)
				a.record(Record{Time: a.cfg.Now(), Kind: "would_" + string(act.Kind), ID: act.ID,
					Before: act.From, After: after(act), Issue: act.Issue, Reason: act.Reason, DryRun: true})
			}
		}
		return
	}
	c, err := a.connect(ctx)
	if err != nil {
		return
	}
	for _, act := range actions {
		changed, err := apply(ctx, c, act)
		if err != nil {
			a.log.Error("cluster change failed", "action", act.Kind, "id", act.ID, "before", act.From,
				"after", after(act), "err", err)
			continue
		}
		if !changed {
			a.log.Info("cluster change not needed: the object is no longer as planned", "action", act.Kind,
				"id", act.ID, "expected", act.From)
			continue
		}
		a.log.Info("cluster change", "action", act.Kind, "id", act.ID, "before", act.From, "after", after(act),
			"issue", act.Issue, "reason", act.Reason)
		a.record(Record{Time: a.cfg.Now(), Kind: string(act.Kind), ID: act.ID, Before: act.From,
			After: after(act), Issue: act.Issue, Reason: act.Reason})
	}
}

func after(act Action) string {
	if act.Kind == ActionDropEmptyDB || act.Kind == ActionDropDuplicateDB {
		return "(dropped)"
	}
	return act.To
}

func apply(ctx context.Context, c Cluster, act Action) (bool, error) {
	switch act.Kind {
	case ActionRenameDB:
		return c.RenameDB(ctx, act.ID, act.From, act.To)
	case ActionDropEmptyDB:
		return c.DropDBIfEmpty(ctx, act.ID, act.From)
	case ActionDropDuplicateDB:
		return c.DropDuplicateDBIfEmpty(ctx, act.ID, act.From)
	case ActionMoveTable:
		return c.MoveTable(ctx, act.ID, act.FromID, act.ToID)
	case ActionRenameTable:
		return c.RenameTable(ctx, act.ID, act.From, act.To)
	case ActionRenameServer:
		return c.RenameServer(ctx, act.ID, act.From, act.To)
	}
	return false, fmt.Errorf("unknown action %q", act.Kind)
}

// sortPeers orders peer views for display.
func sortPeers(pvs []PeerStatus) {
	slices.SortFunc(pvs, func(a, b PeerStatus) int { return cmp.Compare(a.Key, b.Key) })
}
