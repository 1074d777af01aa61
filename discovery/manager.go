package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// PeerState is one provider's view of one peer, with when that provider
// first and last reported it (for the status page).
type PeerState struct {
	Peer      Peer // as the provider reported it; Source is the provider
	FirstSeen time.Time
	LastSeen  time.Time
}

// Manager runs providers and merges their peers.
type Manager struct {
	// Fence, when set (before Run), is asked about every merged peer; a peer
	// for which it returns an error is dropped, and the error is logged once
	// per peer (again only if the error changes). See ClusterFence.
	Fence func(Peer) error

	log       *slog.Logger
	providers []Provider
	now       func() time.Time
	updates   chan []Peer

	mu      sync.Mutex // guards everything below
	started bool
	groups  map[string]map[string][]Peer     // provider -> group source -> peers
	seen    map[string]map[string]*PeerState // provider -> peer key -> state
	fenced  map[string]string                // peer key -> logged fence error
	merged  []Peer
}

// NewManager returns a manager for providers. Names must be unique.
func NewManager(logger *slog.Logger, providers ...Provider) *Manager {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		log:       logger,
		providers: providers,
		now:       time.Now,
		updates:   make(chan []Peer, 1),
		groups:    map[string]map[string][]Peer{},
		seen:      map[string]map[string]*PeerState{},
		fenced:    map[string]string{},
	}
}

// ClusterFence returns a Fence that drops peers announcing a cluster name
// other than name. Peers without a cluster name pass.
func ClusterFence(name string) func(Peer) error {
	return func(p Peer) error {
		if p.Cluster != "" && p.Cluster != name {
			return fmt.Errorf("peer %s announces cluster %q, not %q", p.Key(), p.Cluster, name)
		}
		return nil
	}
}

// Updates delivers the merged peer set whenever it changes. It holds only
// the latest set: a slow reader skips intermediate ones, and providers never
// wait for it. It is closed when Run returns.
func (m *Manager) Updates() <-chan []Peer { return m.updates }

// Peers returns the current merged peer set.
func (m *Manager) Peers() []Peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return clonePeers(m.merged)
}

// Snapshot returns every provider's current peers with first and last seen
// times, sorted by peer key then provider.
func (m *Manager) Snapshot() []PeerState {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []PeerState
	for _, byKey := range m.seen {
		for _, st := range byKey {
			s := *st
			s.Peer = s.Peer.clone()
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		ki, kj := out[i].Peer.Key(), out[j].Peer.Key()
		if ki != kj {
			return ki < kj
		}
		return out[i].Peer.Source < out[j].Peer.Source
	})
	return out
}

// Run runs the providers until ctx ends, then waits for them to return and
// closes Updates. It returns an error only if called twice or if provider
// names are not unique.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("discovery: Manager.Run called twice")
	}
	m.started = true
	m.mu.Unlock()
	names := map[string]bool{}
	for _, p := range m.providers {
		if names[p.Name()] {
			return fmt.Errorf("discovery: two providers named %q", p.Name())
		}
		names[p.Name()] = true
	}

	var wg sync.WaitGroup
	for _, p := range m.providers {
		up := make(chan []Group)
		name := p.Name()
		wg.Go(func() {
			p.Run(ctx, up)
			if ctx.Err() == nil {
				m.log.Warn("discovery provider stopped early", "provider", name)
			}
		})
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case gs := <-up:
					m.apply(name, gs)
				}
			}
		})
	}
	wg.Wait()
	close(m.updates)
	return nil
}

// apply records groups from provider and publishes the new merged set if it
// changed.
func (m *Manager) apply(provider string, groups []Group) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()

	byGroup := m.groups[provider]
	if byGroup == nil {
		byGroup = map[string][]Peer{}
		m.groups[provider] = byGroup
	}
	for _, g := range groups {
		if len(g.Peers) == 0 {
			delete(byGroup, g.Source)
			continue
		}
		peers := make([]Peer, 0, len(g.Peers))
		for _, p := range g.Peers {
			p = p.clone()
			p.Source = provider
			peers = append(peers, p)
		}
		byGroup[g.Source] = peers
	}

	// First/last seen for this provider's peers.
	seen := m.seen[provider]
	if seen == nil {
		seen = map[string]*PeerState{}
		m.seen[provider] = seen
	}
	current := map[string]bool{}
	for _, peers := range byGroup {
		for _, p := range peers {
			k := p.Key()
			current[k] = true
			if st, ok := seen[k]; ok {
				st.Peer, st.LastSeen = p, now
			} else {
				seen[k] = &PeerState{Peer: p, FirstSeen: now, LastSeen: now}
			}
		}
	}
	for k := range seen {
		if !current[k] {
			delete(seen, k)
		}
	}

	merged := m.fence(Merge(m.allPeers()))
	if m.merged != nil && reflect.DeepEqual(merged, m.merged) {
		return
	}
	m.merged = merged
	// Replace any unread set with the latest; under mu nobody else sends,
	// so the send below cannot block.
	select {
	case <-m.updates:
	default:
	}
	m.updates <- clonePeers(merged)
}

func (m *Manager) allPeers() []Peer {
	var all []Peer
	for _, byGroup := range m.groups {
		for _, peers := range byGroup {
			all = append(all, peers...)
		}
	}
	return all
}

// fence drops the peers Fence rejects, logging each once.
func (m *Manager) fence(peers []Peer) []Peer {
	out := make([]Peer, 0, len(peers))
	stillFenced := map[string]bool{}
	for _, p := range peers {
		if m.Fence != nil {
			if err := m.Fence(p); err != nil {
				k := p.Key()
				stillFenced[k] = true
				if m.fenced[k] != err.Error() {
					m.fenced[k] = err.Error()
					m.log.Warn("ignoring discovered peer", "peer", k, "source", p.Source, "err", err)
				}
				continue
			}
		}
		out = append(out, p)
	}
	for k := range m.fenced {
		if !stillFenced[k] {
			delete(m.fenced, k)
		}
	}
	return out
}

// Merge combines peers that are the same server: equal Key, or a peer
// without a server id whose endpoints belong to exactly one peer with an id.
// Addresses are unioned; Source lists every provider, sorted and
// comma-separated; the first non-empty ServerID, Cluster, DriverPort and
// Port win in source order. The result is sorted by Key.
func Merge(peers []Peer) []Peer {
	sorted := clonePeers(peers)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Source < sorted[j].Source })

	byKey := map[string]*Peer{}
	sources := map[string][]string{}
	var keys []string
	for _, p := range sorted {
		k := p.Key()
		if m, ok := byKey[k]; ok {
			mergeInto(m, p)
		} else {
			c := p.clone()
			byKey[k] = &c
			keys = append(keys, k)
		}
		sources[k] = appendUnique(sources[k], strings.Split(p.Source, ",")...)
	}

	// Attach address-keyed peers to the one id-keyed peer that has one of
	// their endpoints (a static entry and an mDNS record of the same node).
	owner := map[string][]string{} // endpoint -> id keys
	for _, k := range keys {
		if p := byKey[k]; p.ServerID != "" {
			for _, e := range p.Endpoints() {
				owner[e] = appendUnique(owner[e], k)
			}
		}
	}
	attached := map[string]bool{}
	for _, k := range keys {
		p := byKey[k]
		if p.ServerID != "" {
			continue
		}
		var ids []string
		for _, e := range p.Endpoints() {
			ids = appendUnique(ids, owner[e]...)
		}
		if len(ids) == 1 {
			mergeInto(byKey[ids[0]], *p)
			sources[ids[0]] = appendUnique(sources[ids[0]], sources[k]...)
			attached[k] = true
		}
	}
	var out []Peer
	for _, k := range keys {
		if attached[k] {
			continue
		}
		p := byKey[k]
		src := sources[k]
		sort.Strings(src)
		p.Source = strings.Join(src, ",")
		sort.Strings(p.Addrs)
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

func mergeInto(dst *Peer, p Peer) {
	dst.Addrs = appendUnique(dst.Addrs, p.Addrs...)
	if dst.Port == 0 {
		dst.Port = p.Port
	}
	if dst.ServerID == "" {
		dst.ServerID = p.ServerID
	}
	if dst.Cluster == "" {
		dst.Cluster = p.Cluster
	}
	if dst.DriverPort == 0 {
		dst.DriverPort = p.DriverPort
	}
}

func appendUnique(s []string, vs ...string) []string {
	for _, v := range vs {
		if v != "" && !slices.Contains(s, v) {
			s = append(s, v)
		}
	}
	return s
}

func clonePeers(ps []Peer) []Peer {
	if ps == nil {
		return nil
	}
	out := make([]Peer, len(ps))
	for i, p := range ps {
		out[i] = p.clone()
	}
	return out
}
