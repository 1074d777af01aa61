// Package dockerlabels finds RethinkDB peers among the containers of a
// Docker Engine, by their labels.
//
// # Which containers
//
// With no selector, the agent must run in a container of a compose service:
// the peers are the running containers of the same compose project and
// service (labels com.docker.compose.project and com.docker.compose.service),
// itself included. The agent finds its own container from
// /proc/self/mountinfo, /proc/self/cgroup or its host name, and asks the
// Engine about it. With a selector (--docker-label KEY=VALUE, repeatable,
// all must match; KEY alone means "has the label"), the peers are the
// running containers carrying those labels, for example
// io.rethinkdb.cluster=NAME.
//
// # Address and port
//
// A peer's address is its IP on the networks it shares with the agent's
// container, or on the network named by Config.Network (--docker-network).
// Outside a container, or when the agent's container uses the host's
// network, every network of the peer counts. The cluster port comes from
// the label io.rethinkdb.cluster-port (default 29015), the cluster name
// from io.rethinkdb.cluster. A container with a malformed port label is
// logged (naming the container and the label) and ignored.
//
// # Keeping up
//
// The provider subscribes to the Engine's container and network events
// before it lists the containers, so nothing happening in between is
// missed; the subscription also asks for the recent past (since), which
// covers the Engine answering the subscription before it registers it.
// Events are handled one at a time, in order, each by looking at the
// container's current state. When the event stream ends or fails, the
// provider reconnects with since (the time of the last event seen), lists
// everything again, and never gives up (exponential backoff up to 30 s).
// It also lists everything every 30 s (Config.Resync).
//
// # Permissions
//
// The provider only reads: it lists and inspects containers and follows
// events. It does not need the Docker socket itself: run it behind a
// read-only socket proxy and point DOCKER_HOST at the proxy, e.g. with
// tecnativa/docker-socket-proxy (POST=0 is its default):
//
//	services:
//	  dockerproxy:
//	    image: tecnativa/docker-socket-proxy
//	    environment: {CONTAINERS: 1, EVENTS: 1}
//	    volumes: ["/var/run/docker.sock:/var/run/docker.sock:ro"]
//	  rethinkdb:
//	    environment: {DOCKER_HOST: "tcp://dockerproxy:2375"}
//	    command: ["rethinkdb-agent", "run", "--discovery", "docker"]
//
// The client reads DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH and
// DOCKER_TLS_VERIFY as the docker CLI does, and negotiates the API version
// (Engine API 1.40 and later).
package dockerlabels

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"time"

	"github.com/cenkalti/backoff/v5"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
)

// Name is the provider name, used as Peer.Source.
const Name = "docker"

// GroupSource is the source of the provider's one group.
const GroupSource = "docker"

// DefaultResync is how often the provider lists every container anyway.
const DefaultResync = 30 * time.Second

// Timing knobs that tests shorten.
var (
	retryMin      = 500 * time.Millisecond
	retryMax      = 30 * time.Second
	callTimeout   = 15 * time.Second // one list or inspect
	sinceOverlap  = time.Minute      // how far back the first subscription asks
	healthyStream = 10 * time.Second // a stream that lasted this long was fine
)

// API is the part of the Engine API the provider uses: reads only.
// *client.Client satisfies it.
type API interface {
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	Events(ctx context.Context, options client.EventsListOptions) client.EventsResult
}

// Config configures a Provider.
type Config struct {
	// Selector: label terms KEY=VALUE or KEY (see ParseSelector). Empty:
	// same compose project and service as the agent's own container.
	Selector []string
	// Network, if set, is the name or id of the network whose IPs are used.
	Network string
	// Resync is the period of full listings; default DefaultResync.
	Resync time.Duration
	// Client, if nil, is made from the environment (DOCKER_HOST...).
	Client API
	// SelfCandidates overrides the detection of the agent's own container
	// (ids or id prefixes, best first); for tests.
	SelfCandidates []string
	Logger         *slog.Logger
}

// Provider follows the Engine's containers. See the package doc.
type Provider struct {
	api       API
	closeAPI  func() error
	selector  Selector // fixed, or found from the own container at Run
	network   string
	resync    time.Duration
	log       *slog.Logger
	selfCands []string

	// State, owned by Run's goroutine.
	selfID    string
	selfNets  map[string]bool // network ids of the own container with an IP
	peers     map[string]discovery.Peer
	pending   map[string]bool   // matching running containers with no usable address
	badLogged map[string]string // container id -> label error already logged
	sent      []discovery.Peer
	hasSent   bool
	lastEvent int64 // TimeNano of the last event handled
}

var _ discovery.Provider = (*Provider)(nil)

// New checks the configuration and makes the Docker client. Outside a
// container and without a selector it returns an error saying what to set.
// It does not contact the Engine.
func New(cfg Config) (*Provider, error) {
	sel, err := ParseSelector(cfg.Selector)
	if err != nil {
		return nil, fmt.Errorf("--docker-label: %w", err)
	}
	p := &Provider{
		selector:  sel,
		network:   cfg.Network,
		resync:    cfg.Resync,
		log:       cfg.Logger,
		selfCands: cfg.SelfCandidates,
		api:       cfg.Client,
		peers:     map[string]discovery.Peer{},
		pending:   map[string]bool{},
		badLogged: map[string]string{},
	}
	if p.resync <= 0 {
		p.resync = DefaultResync
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("provider", Name)
	if p.selfCands == nil {
		p.selfCands = selfCandidates()
	}
	if len(sel) == 0 && len(p.selfCands) == 0 {
		return nil, errNotInContainer
	}
	if p.api == nil {
		c, err := client.New(client.FromEnv)
		if err != nil {
			return nil, fmt.Errorf("docker discovery: docker client: %w", err)
		}
		p.api, p.closeAPI = c, c.Close
	}
	return p, nil
}

// Name implements discovery.Provider.
func (p *Provider) Name() string { return Name }

// Run follows the Engine until ctx ends. See the package doc.
func (p *Provider) Run(ctx context.Context, up chan<- []discovery.Group) {
	if p.closeAPI != nil {
		defer p.closeAPI()
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = retryMin, retryMax

	// Find our own container: its networks, and the compose selector.
	for {
		permanent, err := p.findSelf(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if permanent {
			p.log.Error("docker discovery disabled", "err", err)
			<-ctx.Done()
			return
		}
		d := bo.NextBackOff()
		p.log.Warn("cannot reach the Docker Engine; retrying", "err", err, "in", d)
		if !sleep(ctx, d) {
			return
		}
	}
	bo.Reset()
	p.log.Info("following Docker containers", "selector", p.selector.String(), "self", short(p.selfID), "network", p.network)

	for {
		healthy := p.follow(ctx, up, p.since(time.Now()))
		if ctx.Err() != nil {
			return
		}
		if healthy {
			bo.Reset()
		}
		d := bo.NextBackOff()
		p.log.Info("reconnecting to the Docker event stream", "in", d)
		if !sleep(ctx, d) {
			return
		}
	}
}

// since is where a subscription starts: at the last event handled, so that
// a reconnection replays what the broken stream did not deliver; but never
// more than sinceOverlap back (the listing that follows every subscription
// covers older history), and that far back for the first subscription.
func (p *Provider) since(now time.Time) string {
	t := now.Add(-sinceOverlap).UnixNano()
	if p.lastEvent > t {
		t = p.lastEvent
	}
	return fmt.Sprintf("%d.%09d", t/1e9, t%1e9)
}

// follow subscribes to events, lists the containers, then handles events
// (and periodic listings) until the stream ends or a listing fails. It
// reports whether the stream was healthy: it delivered an event or lasted
// a while (a stream refused at once, e.g. by a socket proxy without
// EVENTS=1, must not make the provider reconnect at full speed).
func (p *Provider) follow(ctx context.Context, up chan<- []discovery.Group, since string) (healthy bool) {
	subscribed := time.Now()
	gotEvent := false
	healthy = false
	defer func() {
		healthy = healthy && (gotEvent || time.Since(subscribed) >= healthyStream)
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the client's stream goroutine
	f := client.Filters{}
	f.Add("type", string(events.ContainerEventType), string(events.NetworkEventType))
	f.Add("event", string(events.ActionStart), string(events.ActionDie), string(events.ActionDestroy),
		string(events.ActionPause), string(events.ActionUnPause),
		string(events.ActionConnect), string(events.ActionDisconnect))
	stream := p.api.Events(ctx, client.EventsListOptions{Since: since, Filters: f})

	if err := p.resyncAll(ctx, up); err != nil {
		if ctx.Err() == nil {
			p.log.Warn("listing containers failed", "err", err)
		}
		return false
	}
	tick := time.NewTicker(p.resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return true
		case err := <-stream.Err:
			if ctx.Err() == nil {
				p.log.Warn("Docker event stream ended", "err", err)
			}
			return true
		case m := <-stream.Messages:
			gotEvent = true
			p.handle(ctx, up, m)
		case <-tick.C:
			if err := p.resyncAll(ctx, up); err != nil {
				// A stream can hang silently when the Engine is gone:
				// start over.
				if ctx.Err() == nil {
					p.log.Warn("periodic listing failed; reconnecting", "err", err)
				}
				return true
			}
		}
	}
}

// handle applies one event. Every event is handled by inspecting the
// container as it is now, so that replayed or reordered events (a die
// followed by a start) cannot make a live container flap out.
func (p *Provider) handle(ctx context.Context, up chan<- []discovery.Group, m events.Message) {
	if m.TimeNano > p.lastEvent {
		p.lastEvent = m.TimeNano
	}
	var id string
	switch m.Type {
	case events.ContainerEventType:
		// start, die, destroy, pause, unpause. Labels are in the attributes: skip other
		// containers without asking the Engine.
		id = m.Actor.ID
		if !p.known(id) && !p.selector.Match(m.Actor.Attributes) {
			return
		}
	case events.NetworkEventType:
		// connect, disconnect. They matter only for containers we follow
		// or would follow if they had a usable address.
		id = m.Actor.Attributes["container"]
		if id != "" && id == p.selfID {
			// Our own networks changed: which addresses count may too.
			if err := p.resyncAll(ctx, up); err != nil {
				p.log.Warn("listing containers failed", "err", err)
			}
			return
		}
		if !p.known(id) {
			return
		}
	default:
		return
	}
	if id == "" {
		return
	}
	if err := p.refresh(ctx, id); err != nil {
		// The next listing (at the latest) catches up.
		p.log.Warn("inspecting a container failed", "container", short(id), "err", err)
		return
	}
	p.publish(ctx, up)
}

// refresh inspects one container and updates the state from what it is now.
func (p *Provider) refresh(ctx context.Context, id string) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := p.api.ContainerInspect(cctx, id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		p.forget(id)
		return nil
	}
	if err != nil {
		return err
	}
	c := res.Container
	// Paused containers answer TCP handshakes (the kernel does) but nothing
	// else: not peers until unpaused. The listing leaves them out too.
	if c.State == nil || !c.State.Running || c.State.Paused || c.State.Restarting || c.Config == nil {
		p.forget(id)
		return nil
	}
	var nets map[string]*network.EndpointSettings
	if c.NetworkSettings != nil {
		nets = c.NetworkSettings.Networks
	}
	p.consider(c.ID, c.Name, c.Config.Labels, nets)
	return nil
}

// consider records a running container: as a peer, as pending (no usable
// address), or not at all.
func (p *Provider) consider(id, name string, labels map[string]string, nets map[string]*network.EndpointSettings) {
	p.forget(id)
	if !p.selector.Match(labels) {
		return
	}
	pl, err := ParsePeerLabels(labels)
	if err != nil {
		if p.badLogged[id] != err.Error() {
			p.badLogged[id] = err.Error()
			p.log.Error("ignoring container with a malformed label", "container", trimSlash(name), "id", short(id), "err", err)
		}
		return
	}
	delete(p.badLogged, id)
	addrs := addresses(nets, p.usable)
	if len(addrs) == 0 {
		p.pending[id] = true
		return
	}
	p.peers[id] = discovery.Peer{Addrs: addrs, Port: pl.Port, Cluster: pl.Cluster, Source: Name}
}

func (p *Provider) known(id string) bool {
	_, ok := p.peers[id]
	return ok || p.pending[id]
}

func (p *Provider) forget(id string) {
	delete(p.peers, id)
	delete(p.pending, id)
}

// usable tells whether a network's IPs are used for peers.
func (p *Provider) usable(name, id string) bool {
	if p.network != "" {
		return name == p.network || id == p.network
	}
	if len(p.selfNets) == 0 { // outside a container, or host network
		return true
	}
	return p.selfNets[id]
}

// resyncAll re-reads the own container's networks and lists every running
// container, replacing the state.
func (p *Provider) resyncAll(ctx context.Context, up chan<- []discovery.Group) error {
	if p.selfID != "" {
		if _, err := p.findSelf(ctx); err != nil {
			return err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	f := client.Filters{}
	if vs := p.selector.filterValues(); len(vs) > 0 {
		f.Add("label", vs...)
	}
	res, err := p.api.ContainerList(cctx, client.ContainerListOptions{Filters: f})
	if err != nil {
		return err
	}
	p.peers, p.pending = map[string]discovery.Peer{}, map[string]bool{}
	live := map[string]bool{}
	for _, c := range res.Items {
		// Only running ones (a proxy in between might not filter).
		if c.State != container.StateRunning {
			continue
		}
		live[c.ID] = true
		name := ""
		if len(c.Names) > 0 {
			name = c.Names[0]
		}
		var nets map[string]*network.EndpointSettings
		if c.NetworkSettings != nil {
			nets = c.NetworkSettings.Networks
		}
		p.consider(c.ID, name, c.Labels, nets)
	}
	for id := range p.badLogged {
		if !live[id] {
			delete(p.badLogged, id)
		}
	}
	p.publish(ctx, up)
	return nil
}

// findSelf inspects the agent's own container (when there is one) for its
// networks and, without a configured selector, its compose labels.
// permanent errors are configuration errors that retrying cannot fix.
func (p *Provider) findSelf(ctx context.Context) (permanent bool, err error) {
	cands := p.selfCands
	if p.selfID != "" {
		cands = []string{p.selfID}
	}
	if len(cands) == 0 {
		return false, nil // explicit selector outside a container
	}
	for _, cand := range cands {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		res, err := p.api.ContainerInspect(cctx, cand, client.ContainerInspectOptions{})
		cancel()
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		c := res.Container
		if len(c.ID) < len(cand) || c.ID[:len(cand)] != cand {
			continue // a container *named* like our host name is not us
		}
		if c.Config == nil {
			continue
		}
		nets := map[string]bool{}
		if c.NetworkSettings != nil {
			for _, ep := range c.NetworkSettings.Networks {
				if ep != nil && (ep.IPAddress.IsValid() || ep.GlobalIPv6Address.IsValid()) {
					nets[ep.NetworkID] = true
				}
			}
		}
		if p.selfID == "" && len(p.selector) == 0 {
			sel, ok := composeSelector(c.Config.Labels)
			if !ok {
				return true, fmt.Errorf("own container %s has no %s and %s labels (not started by compose): give a selector with --docker-label KEY=VALUE",
					trimSlash(c.Name), LabelComposeProject, LabelComposeService)
			}
			p.selector = sel
		}
		p.selfID, p.selfNets = c.ID, nets
		return false, nil
	}
	if p.selfID != "" {
		// We were found before: our container cannot vanish while we run
		// in it; most likely the Engine is another one now. Keep going.
		return false, fmt.Errorf("own container %s not found", short(p.selfID))
	}
	if len(p.selector) > 0 {
		// With a selector the own container only narrows the networks.
		p.selfCands = nil
		p.log.Info("own container not found on this Engine; using every network of the peers", "candidates", cands)
		return false, nil
	}
	return true, fmt.Errorf("own container not found on this Engine (tried %v): give a selector with --docker-label KEY=VALUE", cands)
}

// publish sends the group if the peers changed (and once at first).
func (p *Provider) publish(ctx context.Context, up chan<- []discovery.Group) {
	peers := make([]discovery.Peer, 0, len(p.peers))
	for _, pe := range p.peers {
		peers = append(peers, pe)
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Key() < peers[j].Key() })
	if p.hasSent && reflect.DeepEqual(peers, p.sent) {
		return
	}
	select {
	case up <- []discovery.Group{{Source: GroupSource, Peers: peers}}:
		p.sent, p.hasSent = peers, true
	case <-ctx.Done():
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func trimSlash(name string) string {
	if len(name) > 0 && name[0] == '/' {
		return name[1:]
	}
	return name
}
