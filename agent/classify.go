package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// PeerState is what the agent concluded about one discovered peer.
type PeerState string

// Peer states.
const (
	// PeerLocal: one of the peer's endpoints, or its server id, belongs to a
	// server connected in the local cluster.
	PeerLocal PeerState = "local"
	// PeerForeign: reachable, and not part of the local cluster.
	PeerForeign PeerState = "foreign"
	// PeerUnreachable: no endpoint answers on its cluster port.
	PeerUnreachable PeerState = "unreachable"
	// PeerReturning: its address belonged to a server of this cluster that
	// is now disconnected; the cluster redials such servers itself (with
	// backoff up to 15 s), so the agent gives it RejoinGrace first.
	PeerReturning PeerState = "returning"
	// PeerConflict: its address belonged to server X of this cluster, and it
	// now announces another server id. Bridging it can crash servers that
	// still dial X at that address (RethinkDB #6880): never bridged, reported.
	PeerConflict PeerState = "conflict"
	// PeerUnresolved: none of its names resolve.
	PeerUnresolved PeerState = "unresolved"
)

// peerView is one discovered peer with what the agent made of it.
type peerView struct {
	Peer      discovery.Peer
	Endpoints []netip.AddrPort // resolved, sorted
	State     PeerState
	ServerID  string // the local server it matched, for PeerLocal
	Reason    string
	Reachable netip.AddrPort // for PeerForeign: the endpoint that answered
}

// Resolver resolves host names; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Prober tells whether something listens at an endpoint.
type Prober func(ctx context.Context, ep netip.AddrPort) error

// TCPProbe dials the endpoint with a short timeout.
func TCPProbe(timeout time.Duration) Prober {
	return func(ctx context.Context, ep netip.AddrPort) error {
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, "tcp", ep.String())
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// resolveEndpoints turns a peer's addresses into IP endpoints. Names that do
// not resolve are skipped; the error names them when nothing resolves.
func resolveEndpoints(ctx context.Context, r Resolver, p discovery.Peer) ([]netip.AddrPort, error) {
	var eps []netip.AddrPort
	var failed []string
	for _, a := range p.Addrs {
		if ip, err := netip.ParseAddr(a); err == nil {
			eps = append(eps, netip.AddrPortFrom(ip.Unmap(), uint16(p.Port)))
			continue
		}
		ips, err := r.LookupNetIP(ctx, "ip", a)
		if err != nil || len(ips) == 0 {
			failed = append(failed, a)
			continue
		}
		for _, ip := range ips {
			eps = append(eps, netip.AddrPortFrom(ip.Unmap(), uint16(p.Port)))
		}
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("peer %s: cannot resolve %v", p.Key(), failed)
	}
	slices.SortFunc(eps, netip.AddrPort.Compare)
	return slices.Compact(eps), nil
}

// serverEndpoints are the cluster endpoints of one server, from its
// canonical addresses. Host names there are kept only if they parse as IPs;
// canonical addresses are IPs unless --canonical-address gave a name.
func serverEndpoints(s rethink.Server) []netip.AddrPort {
	eps := allEndpoints(s)
	// A server bound to all addresses lists loopback too, and every server
	// has the same loopback endpoint when they use default ports: those say
	// nothing about identity, unless loopback is all there is (one host).
	routable := slices.DeleteFunc(slices.Clone(eps), func(ep netip.AddrPort) bool { return ep.Addr().IsLoopback() })
	if len(routable) > 0 {
		return routable
	}
	return eps
}

// allEndpoints are every IP endpoint among a server's canonical addresses,
// loopback included.
func allEndpoints(s rethink.Server) []netip.AddrPort {
	var eps []netip.AddrPort
	for _, a := range s.CanonicalAddresses {
		ip, err := netip.ParseAddr(a.Host)
		if err != nil {
			continue
		}
		port := a.Port
		if port == 0 {
			port = s.ClusterPort
		}
		eps = append(eps, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
	}
	return eps
}

// endpointOwners maps every cluster endpoint of the connected servers to the
// server's id.
func endpointOwners(v rethink.View) map[netip.AddrPort]string {
	m := map[netip.AddrPort]string{}
	for _, s := range v.Servers {
		for _, ep := range serverEndpoints(s) {
			m[ep] = s.ID
		}
	}
	return m
}

// classifier turns discovered peers into peerViews. It remembers which
// server was last seen at each endpoint, to spot returning servers and
// address reuse (RethinkDB #6880).
type classifier struct {
	resolver Resolver
	probe    Prober
	seen     map[netip.AddrPort]string // endpoint -> server id last seen there
}

func newClassifier(r Resolver, p Prober) *classifier {
	return &classifier{resolver: r, probe: p, seen: map[netip.AddrPort]string{}}
}

func (c *classifier) classify(ctx context.Context, v rethink.View, peers []discovery.Peer) []peerView {
	owners := endpointOwners(v)
	for ep, id := range owners {
		c.seen[ep] = id
	}
	out := make([]peerView, 0, len(peers))
	for _, p := range peers {
		out = append(out, c.one(ctx, v, owners, p))
	}
	slices.SortFunc(out, func(a, b peerView) int { return compareEndpoints(a.Endpoints, b.Endpoints) })
	return out
}

func (c *classifier) one(ctx context.Context, v rethink.View, owners map[netip.AddrPort]string, p discovery.Peer) peerView {
	pv := peerView{Peer: p}
	if p.ServerID != "" {
		if _, ok := v.Server(p.ServerID); ok {
			pv.State, pv.ServerID = PeerLocal, p.ServerID
		}
	}
	eps, err := resolveEndpoints(ctx, c.resolver, p)
	if err != nil {
		if pv.State == "" {
			pv.State, pv.Reason = PeerUnresolved, err.Error()
		}
		return pv
	}
	pv.Endpoints = eps
	if pv.State == PeerLocal {
		return pv
	}
	for _, ep := range eps {
		if id, ok := owners[ep]; ok {
			pv.State, pv.ServerID = PeerLocal, id
			return pv
		}
	}
	// owners leaves out loopback when a server has other addresses, but the
	// local server's own loopback endpoint (listed with --bind all:
	// our_peer_address in src/rpc/connectivity/cluster.cc takes every local
	// IP) would answer a probe and be bridged as if it were a peer.
	for _, ep := range eps {
		if ep.Addr().IsLoopback() && slices.Contains(allEndpoints(v.Self), ep) {
			pv.State, pv.ServerID = PeerLocal, v.Self.ID
			return pv
		}
	}
	var lastErr error
	for _, ep := range eps {
		if lastErr = c.probe(ctx, ep); lastErr == nil {
			pv.Reachable = ep
			break
		}
	}
	if !pv.Reachable.IsValid() {
		pv.State, pv.Reason = PeerUnreachable, lastErr.Error()
		return pv
	}
	for _, ep := range eps {
		was, ok := c.seen[ep]
		if !ok {
			continue
		}
		if p.ServerID != "" && p.ServerID != was {
			pv.State = PeerConflict
			pv.Reason = fmt.Sprintf("%s was server %s of this cluster and now announces server %s (RethinkDB #6880); not bridging it",
				ep, was, p.ServerID)
			return pv
		}
		pv.State = PeerReturning
		pv.Reason = fmt.Sprintf("%s was server %s of this cluster; its peers redial it", ep, was)
		return pv
	}
	pv.State = PeerForeign
	return pv
}

// compareEndpoints orders endpoint lists by their lowest endpoint; empty
// lists sort last.
func compareEndpoints(a, b []netip.AddrPort) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	return a[0].Compare(b[0])
}

// hostPort renders an endpoint as rethinkdb's --join wants it.
func hostPort(ep netip.AddrPort) string {
	return net.JoinHostPort(ep.Addr().String(), strconv.Itoa(int(ep.Port())))
}
