// Package discovery collects RethinkDB peers from several providers (static
// flags and files, mDNS, Docker labels, DNS) in the style of Prometheus
// service discovery: each provider sends whole groups of peers, and a
// Manager merges the latest groups of all providers into one peer set.
package discovery

import (
	"context"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// DefaultClusterPort is RethinkDB's default intracluster port.
const DefaultClusterPort = 29015

// Peer is one RethinkDB server as a provider sees it.
type Peer struct {
	Addrs      []string // IPs or host names on the cluster side, as given
	Port       int      // cluster port
	ServerID   string   // optional: the server's uuid when the provider knows it
	Cluster    string   // optional: the cluster name the peer announces
	DriverPort int      // optional
	Source     string   // provider name; after merging, e.g. "mdns,static"
}

// Endpoints returns host:port for every address.
func (p Peer) Endpoints() []string {
	out := make([]string, 0, len(p.Addrs))
	for _, a := range p.Addrs {
		out = append(out, net.JoinHostPort(a, strconv.Itoa(p.Port)))
	}
	return out
}

// Key is the peer's stable identity: its server id when known, else its
// sorted endpoints.
func (p Peer) Key() string {
	if p.ServerID != "" {
		return "id:" + p.ServerID
	}
	e := p.Endpoints()
	sort.Strings(e)
	return "addr:" + strings.Join(e, ",")
}

func (p Peer) clone() Peer {
	p.Addrs = slices.Clone(p.Addrs)
	return p
}

// Group is a set of peers from one source of one provider (for example one
// file). A provider's newer group with the same Source replaces the older
// one; an empty group removes it.
type Group struct {
	Source string
	Peers  []Peer
}

// Provider finds peers. Run sends whole groups on up whenever they change
// (and once at start), never closes up, selects on ctx.Done when sending,
// and returns when ctx ends.
type Provider interface {
	Name() string
	Run(ctx context.Context, up chan<- []Group)
}
