// Package mdns finds RethinkDB peers on the local link with multicast DNS
// (DNS-SD service _rethinkdb._tcp) and announces the local node there.
//
// The responder is github.com/hashicorp/mdns's Server, with a Zone that
// the agent updates as it learns the local server (Announce). The browser
// is our own, on github.com/miekg/dns, because the library's client has
// faults that filtering its output cannot undo:
//
//   - it drops entries when the Entries channel is not ready (a select
//     with default): we do not use that channel at all; our reader goroutine
//     hands every parsed answer to the poll loop on a buffered channel and
//     blocks (or stops with the context) rather than drop one;
//   - it does not check that an answer belongs to the queried service: we
//     keep only TXT records whose owner is <one label>.<service>.<domain>,
//     and only those that parse as our TXT format (txt.go);
//   - it keeps only the last record of each type in a packet (one address
//     per host): we read every record of a packet, in the answer and the
//     additional sections; moreover the TXT record carries the addresses
//     itself (signed), so one record is the whole announcement;
//   - an IPv6 failure fails its whole query: we query IPv4 by default and
//     IPv6 only when asked, on separate sockets, and a failing family is
//     logged (once) without stopping the other.
//
// Queries go from an ephemeral port (a "legacy unicast" query, RFC 6762
// §6.7): responders (hashicorp/mdns always, Avahi for such queries) answer
// to that port directly. Besides, a socket on the group (224.0.0.251:5353,
// shared with any other responder of the machine) sends our announcement
// when it changes, twice (§8.3), and a goodbye (TTL 0, §10.1) when Run
// ends, and hears those of the others: a node started late is found at
// once however slowly the others poll, and one that stops cleanly is
// dropped at once; polling and expiry cover lost packets and crashes.
package mdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	hmdns "github.com/hashicorp/mdns"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
)

// Name is the provider name, used as Peer.Source and Group.Source.
const Name = "mdns"

// DefaultService is the DNS-SD service type announced and browsed.
const DefaultService = "_rethinkdb._tcp"

// Polling defaults: fast while the peer set changes, slower once stable.
const (
	DefaultMinInterval = time.Second
	DefaultMaxInterval = 15 * time.Second
)

var serviceRE = regexp.MustCompile(`^_[A-Za-z0-9-]{1,15}\._(tcp|udp)$`)

// Config configures a Provider.
type Config struct {
	// Service is the DNS-SD service type; default DefaultService. The
	// domain is always "local.".
	Service string
	// Interface is the network interface to use (e.g. "eth0"). "" means
	// the kernel's default multicast interface for listening on the group
	// (responder, others' announcements), and every up, multicast-capable,
	// non-loopback interface for sending queries and announcements.
	Interface string
	// IPv6 also queries over IPv6 (ff02::fb), on a socket of its own, and
	// announces and accepts global IPv6 addresses. IPv4 is always used;
	// an IPv6 failure is logged once and never stops IPv4.
	IPv6 bool
	// Cluster is the cluster name announced in TXT; "" announces none.
	Cluster string
	// Secret, when set, signs our announcements and makes the provider
	// ignore peers whose announcement is unsigned or does not verify.
	Secret []byte
	// Agent is the agent version announced in TXT.
	Agent string

	MinInterval time.Duration // first poll period; default 1s
	MaxInterval time.Duration // poll period once stable; default 15s
	// Expiry is how long a peer stays after it was last seen; default
	// 3*MaxInterval + MinInterval (so that two lost polls in a row do not
	// drop a peer). Expiry is checked at each poll.
	Expiry time.Duration

	Logger *slog.Logger
}

// Announcement is what the agent knows about the local server; cmd wires
// agent.Config.OnSelf to Provider.Announce.
type Announcement struct {
	ServerID    string
	Name        string
	ClusterPort int
	DriverPort  int
	// Addrs are the server's canonical address hosts (IPs or names).
	Addrs []string
}

// Provider announces the local node and browses for peers.
type Provider struct {
	cfg        Config
	service    string // "_rethinkdb._tcp.local."
	iface      *net.Interface
	log        *slog.Logger
	zone       *zone
	interfaces func() ([]net.Interface, error) // for tests
	changed    chan struct{}                   // Announce -> Run: announce now

	mu       sync.Mutex // guards the fields below (Announce vs Run)
	selfID   string
	retired  []*hmdns.MDNSService // announcements replaced under another instance name: Run says goodbye
	lastAnn  string               // to log each distinct announcement once
	warnedLo bool
}

var _ discovery.Provider = (*Provider)(nil)

// New validates cfg and returns a provider. It opens no socket: Run does.
func New(cfg Config) (*Provider, error) {
	if cfg.Service == "" {
		cfg.Service = DefaultService
	}
	cfg.Service = strings.TrimSuffix(cfg.Service, ".")
	if !serviceRE.MatchString(cfg.Service) {
		return nil, fmt.Errorf("mdns service %q: want _name._tcp or _name._udp (name: letters, digits, '-', at most 15)", cfg.Service)
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = DefaultMinInterval
	}
	if cfg.MaxInterval <= 0 {
		cfg.MaxInterval = DefaultMaxInterval
	}
	if cfg.MaxInterval < cfg.MinInterval {
		return nil, fmt.Errorf("mdns: max interval %v is below min interval %v", cfg.MaxInterval, cfg.MinInterval)
	}
	if cfg.Expiry <= 0 {
		cfg.Expiry = 3*cfg.MaxInterval + cfg.MinInterval
	}
	if err := text(&cfg.Cluster, cfg.Cluster); err != nil {
		return nil, fmt.Errorf("mdns: cluster name %q: %v", cfg.Cluster, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{
		cfg:        cfg,
		service:    cfg.Service + ".local.",
		log:        cfg.Logger.With("provider", Name),
		zone:       &zone{},
		interfaces: net.Interfaces,
		changed:    make(chan struct{}, 1),
	}
	if cfg.Interface != "" {
		ifi, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("mdns interface %q: %w", cfg.Interface, err)
		}
		if ifi.Flags&net.FlagMulticast == 0 {
			return nil, fmt.Errorf("mdns interface %q does not do multicast", cfg.Interface)
		}
		p.iface = ifi
	}
	return p, nil
}

// Name implements discovery.Provider.
func (p *Provider) Name() string { return Name }

// LoadSecret reads the shared secret from file if set, else from the
// environment variable env. A file's one trailing newline is dropped. The
// secret is never logged. An empty file is an error; an unset variable
// means no secret.
func LoadSecret(file, env string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("mdns secret file: %w", err)
		}
		s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if s == "" {
			return nil, fmt.Errorf("mdns secret file %s is empty", file)
		}
		return []byte(s), nil
	}
	if env != "" {
		if s := os.Getenv(env); s != "" {
			return []byte(s), nil
		}
	}
	return nil, nil
}

// InstanceName is the DNS-SD instance name of a server: one DNS label,
// "<name>-<first 8 of id>", since names can collide (the agent exists to
// repair that) and ids are unreadable. Characters outside [A-Za-z0-9_-]
// become '_' (RethinkDB names never have any), so no dot ever splits it.
func InstanceName(name, id string) string {
	clean := func(s string) string {
		return strings.Map(func(c rune) rune {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
				return c
			}
			return '_'
		}, s)
	}
	short := clean(id)
	if len(short) > 8 {
		short = short[:8]
	}
	name = clean(name)
	if max := 63 - 1 - len(short); len(name) > max {
		name = name[:max]
	}
	if name == "" {
		return short
	}
	return name + "-" + short
}

// hostName is the host name of the SRV target: unique per server, a valid
// host label, and ending in ".local." so that other resolvers (Avahi) can
// look it up (see NOTES.md).
func hostName(id string) string { return "rdb-" + id + ".local." }

// Announce sets what the responder announces. It does no network I/O and
// never blocks, so it can be called from the agent's loop (OnSelf). An
// announcement that cannot be made (no id, no port, no address) is logged
// and withdraws the previous one.
func (p *Provider) Announce(a Announcement) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.zone.svc.Load()
	svc, rec, err := p.service4(a)
	if old != nil && (svc == nil || old.Instance != svc.Instance) {
		// Peers key us by instance name: the old one must go.
		p.retired = append(p.retired, old)
		p.notify()
	}
	if err != nil {
		p.zone.set(nil)
		p.selfID = strings.ToLower(a.ServerID)
		p.log.Error("mdns: not announcing the local server", "err", err)
		p.lastAnn = ""
		return
	}
	p.zone.set(svc)
	p.selfID = rec.ServerID
	key := fmt.Sprint(svc.Instance, svc.Port, svc.IPs, svc.TXT)
	if key != p.lastAnn {
		p.lastAnn = key
		p.notify()
		p.log.Info("mdns: announcing the local server", "instance", svc.Instance, "service", p.service,
			"host", svc.HostName, "port", svc.Port, "addrs", rec.Addrs, "signed", len(p.cfg.Secret) > 0)
	}
}

// notify tells Run that the announcement changed.
func (p *Provider) notify() {
	select {
	case p.changed <- struct{}{}:
	default: // Run has one pending already
	}
}

// takeRetired returns the retired announcements and forgets them.
func (p *Provider) takeRetired() []*hmdns.MDNSService {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.retired
	p.retired = nil
	return r
}

// announceAddrs chooses the addresses to announce, and says whether they
// come from the interfaces rather than from the node.
//
// The node's canonical addresses are what other servers dial, so the
// non-loopback IPs among them come first. When there are none (the node
// binds only loopback, or its canonical addresses are host names) we fall
// back to the IPv4 (and, with IPv6, global IPv6) addresses of the mDNS
// interface(s): a peer that hears us on an interface can reach that
// interface's address, which is right for host names and for port
// forwards, while a node truly bound to loopback stays unreachable either
// way: the agent's probe tells, and we warn once.
func (p *Provider) announceAddrs(hosts []string) ([]netip.Addr, bool) {
	var out []netip.Addr
	for _, h := range hosts {
		a, err := netip.ParseAddr(h)
		if err != nil || !usable(a, p.cfg.IPv6) || slices.Contains(out, a) {
			continue
		}
		out = append(out, a.Unmap())
	}
	if len(out) > 0 {
		return out, false
	}
	ifs := []net.Interface{}
	if p.iface != nil {
		ifs = append(ifs, *p.iface)
	} else if all, err := p.interfaces(); err == nil {
		ifs = multicastInterfaces(all)
	}
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			ipn, ok := ad.(*net.IPNet)
			if !ok {
				continue
			}
			a, ok := netip.AddrFromSlice(ipn.IP)
			if ok && usable(a.Unmap(), p.cfg.IPv6) && !slices.Contains(out, a.Unmap()) {
				out = append(out, a.Unmap())
			}
		}
	}
	return out, true
}

// usable reports whether a can be announced: not loopback, unspecified,
// multicast, or (needing a zone) link-local; IPv6 only when enabled.
func usable(a netip.Addr, v6 bool) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.Zone() != "" {
		return false
	}
	return a.Is4() || v6
}

// multicastInterfaces keeps the up, multicast-capable, non-loopback ones.
func multicastInterfaces(all []net.Interface) []net.Interface {
	var out []net.Interface
	for _, ifi := range all {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 && ifi.Flags&net.FlagLoopback == 0 {
			out = append(out, ifi)
		}
	}
	return out
}

// Run serves announcements and browses until ctx ends. It sends the mdns
// group (whole) at start and whenever the peer set changes; it never closes
// up. Sockets that cannot be opened are logged and retried at each poll;
// Run returns only when ctx ends, after its server and reader goroutines
// have stopped.
func (p *Provider) Run(ctx context.Context, up chan<- []discovery.Group) {
	// The responder starts first: peers can find us even before our
	// first group is taken.
	srv := &responder{p: p}
	defer srv.stop()
	srv.ensure()
	q := &querier{p: p, found: make(chan answer, 64)}
	defer q.close()
	b := &browser{p: p, peers: map[string]*seenPeer{}, problems: map[string]problem{}}
	if !b.send(ctx, up) {
		return
	}

	// On the way out, say goodbye so that peers drop us at once.
	defer func() { q.announce(p.zone.records(), true) }()

	interval := p.cfg.MinInterval
	timer := time.NewTimer(0) // the first poll at once
	defer timer.Stop()
	// Announcements (RFC 6762 §8.3): when ours changes, at once and again
	// a second later, so that peers polling slowly learn of us in time.
	var again <-chan time.Time
	changed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.changed:
			srv.ensure()
			q.ensure(ctx)
			for _, old := range p.takeRetired() {
				q.announce(recordsOf(old), true)
			}
			q.announce(p.zone.records(), false)
			again = time.After(time.Second)
		case <-again:
			q.announce(p.zone.records(), false)
			again = nil
		case a := <-q.found:
			if b.take(a, time.Now()) {
				changed = true
				if !b.send(ctx, up) {
					return
				}
			}
		case <-timer.C:
			srv.ensure()
			q.ensure(ctx)
			q.query()
			if b.expire(time.Now()) {
				changed = true
				if !b.send(ctx, up) {
					return
				}
			}
			// Fast while anything changes, then doubling up to the max.
			if changed {
				interval = p.cfg.MinInterval
			} else {
				interval = min(2*interval, p.cfg.MaxInterval)
			}
			changed = false
			timer.Reset(jitter(interval))
		}
	}
}

// jitter spreads d by ±20% so that agents started together do not query
// in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// problem is the last thing logged about an instance, and when it was seen.
type problem struct {
	msg  string
	seen time.Time
}

type seenPeer struct {
	peer     discovery.Peer
	instance string
	lastSeen time.Time
}

// browser turns answers into the peer set.
type browser struct {
	p        *Provider
	peers    map[string]*seenPeer // by instance
	problems map[string]problem   // by instance, logged once each
	sent     []discovery.Peer
	started  bool
}

// take records an answer; it reports whether the peer set changed.
func (b *browser) take(a answer, now time.Time) bool {
	peer, err := b.p.peerOf(a)
	if err != nil {
		if errors.Is(err, errSelf) {
			return false
		}
		msg := err.Error()
		if pr, ok := b.problems[a.instance]; !ok || pr.msg != msg {
			b.p.log.Warn("mdns: ignoring announcement", "instance", a.instance, "from", a.from, "err", msg)
		}
		b.problems[a.instance] = problem{msg: msg, seen: now}
		// An instance that now announces something unusable is gone.
		_, had := b.peers[a.instance]
		delete(b.peers, a.instance)
		return had
	}
	if _, ok := b.problems[a.instance]; ok {
		delete(b.problems, a.instance)
		b.p.log.Info("mdns: announcement is usable again", "instance", a.instance)
	}
	if a.ttl == 0 { // goodbye (RFC 6762 §10.1)
		_, had := b.peers[a.instance]
		if had {
			b.p.log.Info("mdns: peer said goodbye", "instance", a.instance, "server_id", peer.ServerID)
			delete(b.peers, a.instance)
		}
		return had
	}
	old, ok := b.peers[a.instance]
	b.peers[a.instance] = &seenPeer{peer: peer, instance: a.instance, lastSeen: now}
	if !ok {
		b.p.log.Info("mdns: found peer", "instance", a.instance, "server_id", peer.ServerID, "endpoints", peer.Endpoints())
		return true
	}
	return !reflect.DeepEqual(old.peer, peer)
}

// expire drops peers (and remembered problems) not seen for Expiry.
func (b *browser) expire(now time.Time) bool {
	changed := false
	for inst, sp := range b.peers {
		if now.Sub(sp.lastSeen) > b.p.cfg.Expiry {
			b.p.log.Info("mdns: peer expired", "instance", inst, "server_id", sp.peer.ServerID, "last_seen", sp.lastSeen)
			delete(b.peers, inst)
			changed = true
		}
	}
	for inst, pr := range b.problems {
		if now.Sub(pr.seen) > b.p.cfg.Expiry {
			delete(b.problems, inst)
		}
	}
	return changed
}

// send sends the whole group if it differs from the last one sent.
func (b *browser) send(ctx context.Context, up chan<- []discovery.Group) bool {
	peers := make([]discovery.Peer, 0, len(b.peers))
	for _, sp := range b.peers {
		peers = append(peers, sp.peer)
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Key() < peers[j].Key() })
	if b.started && reflect.DeepEqual(peers, b.sent) {
		return true
	}
	b.started, b.sent = true, peers
	select {
	case up <- []discovery.Group{{Source: Name, Peers: slices.Clone(peers)}}:
		return true
	case <-ctx.Done():
		return false
	}
}

var errSelf = errors.New("our own announcement")

// peerOf checks an answer: TXT format, signature, SRV consistency.
func (p *Provider) peerOf(a answer) (discovery.Peer, error) {
	rec, err := ParseTXT(a.txt)
	if err != nil {
		return discovery.Peer{}, fmt.Errorf("malformed TXT record: %w", err)
	}
	p.mu.Lock()
	self := p.selfID
	p.mu.Unlock()
	if rec.ServerID == self {
		return discovery.Peer{}, errSelf
	}
	if len(p.cfg.Secret) > 0 {
		if err := rec.Verify(p.cfg.Secret); err != nil {
			return discovery.Peer{}, fmt.Errorf("%w (a shared secret is set)", err)
		}
	}
	if a.srvPort != 0 && a.srvPort != rec.Port {
		return discovery.Peer{}, fmt.Errorf("malformed announcement: SRV port %d differs from TXT field %q=%d", a.srvPort, keyPort, rec.Port)
	}
	addrs := make([]string, 0, len(rec.Addrs))
	for _, ad := range rec.Addrs {
		if ad.Is6() && !p.cfg.IPv6 {
			continue
		}
		addrs = append(addrs, ad.String())
	}
	if len(addrs) == 0 {
		return discovery.Peer{}, errors.New("no IPv4 address in TXT field \"addrs\" (IPv6 is off)")
	}
	sort.Strings(addrs)
	return discovery.Peer{
		Addrs:      addrs,
		Port:       rec.Port,
		ServerID:   rec.ServerID,
		Cluster:    rec.Cluster,
		DriverPort: rec.DriverPort,
		Source:     Name,
	}, nil
}
