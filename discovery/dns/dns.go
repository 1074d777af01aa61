// Package dns finds RethinkDB peers through DNS: the A and AAAA records of
// a name (a compose service name, tasks.<service> on Swarm, a Kubernetes
// headless service) or the SRV records of a name such as
// _rethinkdb._tcp.<service>.
//
// The provider asks the name servers itself (with github.com/miekg/dns), so
// that it can tell the two kinds of failure apart:
//   - "no such name" (NXDOMAIN, or an answer without records): there are no
//     peers under that name; its group becomes empty;
//   - "could not ask" (timeout, SERVFAIL, REFUSED, network error): nothing
//     is known; the name keeps its last peers, and the failure is logged.
//
// Each name is looked up every interval (all names in parallel) and is its
// own group (source "dns/<name>"), so a failing name does not hide the
// others. Names are completed with the search list of /etc/resolv.conf, as
// the C library would (ndots); with explicit servers they are used as given.
//
// Docker's embedded DNS (127.0.0.11, Engine 20.10, checked on this
// project's machines) answers a service name or network alias with its
// running containers' A records and an empty NOERROR for AAAA on IPv4-only
// networks, and NXDOMAIN once no container of it runs: scaling a service
// to zero empties the group.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
)

// Name is the provider name, used as Peer.Source.
const Name = "dns"

// Defaults.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
	// SRVPrefix marks a --dns-name to be looked up as SRV records.
	SRVPrefix = "srv+"
)

// Query is one name to look up.
type Query struct {
	Name string // as given, without SRVPrefix
	SRV  bool
}

func (q Query) String() string {
	if q.SRV {
		return SRVPrefix + q.Name
	}
	return q.Name
}

// ParseQuery parses a --dns-name value: NAME for A/AAAA records, or
// srv+NAME for SRV records (e.g. srv+_rethinkdb._tcp.rethinkdb).
func ParseQuery(s string) (Query, error) {
	q := Query{Name: strings.TrimSpace(s)}
	if rest, ok := strings.CutPrefix(q.Name, SRVPrefix); ok {
		q.Name, q.SRV = rest, true
	}
	if q.Name == "" {
		return Query{}, fmt.Errorf("%q: empty name", s)
	}
	if _, ok := miekg.IsDomainName(q.Name); !ok || strings.ContainsAny(q.Name, " \t\\") {
		return Query{}, fmt.Errorf("%q is not a domain name", s)
	}
	return q, nil
}

// Config configures a Provider.
type Config struct {
	Names    []string      // --dns-name values (see ParseQuery); at least one
	Port     int           // cluster port of A/AAAA peers; default 29015
	Interval time.Duration // default DefaultInterval
	Timeout  time.Duration // per question and server; default DefaultTimeout
	// Servers are host:port (or host, port 53) of the name servers to ask.
	// Empty: those of ResolvConf, with its search list.
	Servers []string
	// ResolvConf is read when Servers is empty; default /etc/resolv.conf.
	ResolvConf string
	Logger     *slog.Logger
}

// Provider looks names up periodically.
type Provider struct {
	queries  []Query
	port     int
	interval time.Duration
	servers  []string
	search   *miekg.ClientConfig // nil: names are absolute
	client   *miekg.Client
	log      *slog.Logger

	last    map[Query][]discovery.Peer // last state sent per name
	lastErr map[Query]string           // last failure logged per name
}

var _ discovery.Provider = (*Provider)(nil)

// New checks the configuration and reads resolv.conf when needed. Errors
// name the culprit.
func New(cfg Config) (*Provider, error) {
	if len(cfg.Names) == 0 {
		return nil, errors.New("dns discovery: no name to look up: give --dns-name NAME (or srv+NAME)")
	}
	p := &Provider{
		port:     cfg.Port,
		interval: cfg.Interval,
		log:      cfg.Logger,
		last:     map[Query][]discovery.Peer{},
		lastErr:  map[Query]string{},
	}
	seen := map[Query]bool{}
	for _, n := range cfg.Names {
		q, err := ParseQuery(n)
		if err != nil {
			return nil, fmt.Errorf("--dns-name %w", err)
		}
		if !seen[q] {
			seen[q] = true
			p.queries = append(p.queries, q)
		}
	}
	if p.port == 0 {
		p.port = discovery.DefaultClusterPort
	}
	if p.port < 1 || p.port > 65535 {
		return nil, fmt.Errorf("--dns-port %d: want 1-65535", p.port)
	}
	if p.interval == 0 {
		p.interval = DefaultInterval
	}
	if p.interval < 0 {
		return nil, fmt.Errorf("--dns-interval %s: must be positive", p.interval)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	p.client = &miekg.Client{Timeout: timeout}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("provider", Name)

	for _, s := range cfg.Servers {
		addr, err := serverAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--dns-server %q: %w", s, err)
		}
		p.servers = append(p.servers, addr)
	}
	if len(p.servers) == 0 {
		file := cfg.ResolvConf
		if file == "" {
			file = "/etc/resolv.conf"
		}
		cc, err := miekg.ClientConfigFromFile(file)
		if err != nil {
			return nil, fmt.Errorf("dns discovery: %s: %w (or give --dns-server)", file, err)
		}
		for _, s := range cc.Servers {
			p.servers = append(p.servers, net.JoinHostPort(s, cc.Port))
		}
		if len(p.servers) == 0 {
			return nil, fmt.Errorf("dns discovery: no nameserver in %s (give --dns-server)", file)
		}
		p.search = cc
	}
	return p, nil
}

// serverAddr accepts host:port, [v6]:port, a bare IPv4 or IPv6 address, or
// a host name (port 53).
func serverAddr(s string) (string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(ip.String(), "53"), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(s, ":") {
			return "", errors.New("want HOST[:PORT]")
		}
		host, port = s, "53"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("bad port %q", port)
	}
	if host == "" {
		return "", errors.New("empty host")
	}
	return net.JoinHostPort(host, port), nil
}

// Name implements discovery.Provider.
func (p *Provider) Name() string { return Name }

// Run looks every name up at once and then every interval, and sends the
// groups that changed. See the package doc for how failures count.
func (p *Provider) Run(ctx context.Context, up chan<- []discovery.Group) {
	first := true
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Names are asked in parallel: one that times out does not hold
		// the others back.
		type result struct {
			peers []discovery.Peer
			err   error
		}
		results := make([]result, len(p.queries))
		var wg sync.WaitGroup
		for i, q := range p.queries {
			wg.Go(func() {
				peers, err := p.Lookup(ctx, q)
				results[i] = result{peers, err}
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		var changed []discovery.Group
		for i, q := range p.queries {
			peers, err := results[i].peers, results[i].err
			if err != nil {
				if p.lastErr[q] != err.Error() {
					p.lastErr[q] = err.Error()
					p.log.Warn("DNS lookup failed; keeping the last peers of this name", "name", q.String(), "peers", len(p.last[q]), "err", err)
				}
				continue
			}
			if _, failed := p.lastErr[q]; failed {
				delete(p.lastErr, q)
				p.log.Info("DNS lookup works again", "name", q.String(), "peers", len(peers))
			}
			old, known := p.last[q]
			if known && reflect.DeepEqual(old, peers) {
				continue
			}
			p.last[q] = peers
			changed = append(changed, discovery.Group{Source: Name + "/" + q.String(), Peers: peers})
		}
		if len(changed) > 0 || first {
			select {
			case up <- changed:
				first = false
			case <-ctx.Done():
				return
			}
		}
		t.Reset(p.interval)
	}
}

// errNoRecords: the name does not exist, or has no records of the type.
var errNoRecords = errors.New("no records")

// Lookup asks for q's records now. No such name is (nil, nil); a failure
// to ask is an error.
func (p *Provider) Lookup(ctx context.Context, q Query) ([]discovery.Peer, error) {
	var peers []discovery.Peer
	var err error
	for _, name := range p.names(q.Name) {
		if q.SRV {
			peers, err = p.lookupSRV(ctx, name)
		} else {
			peers, err = p.lookupIPs(ctx, name, p.port)
		}
		if errors.Is(err, errNoRecords) {
			continue // next search domain
		}
		break
	}
	if errors.Is(err, errNoRecords) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Key() < peers[j].Key() })
	return peers, nil
}

// names are the absolute names to try for name, in order.
func (p *Provider) names(name string) []string {
	if p.search == nil {
		return []string{miekg.Fqdn(name)}
	}
	return p.search.NameList(name)
}

// lookupIPs returns one peer per A and AAAA record of name (absolute).
func (p *Provider) lookupIPs(ctx context.Context, name string, port int) ([]discovery.Peer, error) {
	var peers []discovery.Peer
	for _, qtype := range []uint16{miekg.TypeA, miekg.TypeAAAA} {
		rrs, err := p.ask(ctx, name, qtype)
		if errors.Is(err, errNoRecords) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, rr := range rrs {
			var ip net.IP
			switch rr := rr.(type) {
			case *miekg.A:
				ip = rr.A
			case *miekg.AAAA:
				ip = rr.AAAA
			default:
				continue // CNAMEs on the way
			}
			peers = append(peers, discovery.Peer{Addrs: []string{ip.String()}, Port: port, Source: Name})
		}
	}
	if len(peers) == 0 {
		return nil, errNoRecords
	}
	return peers, nil
}

// lookupSRV returns one peer per SRV record of name (absolute). Targets are
// resolved through the same servers (glue in the answer first); a target
// that does not resolve is kept as a host name, for the agent to try.
func (p *Provider) lookupSRV(ctx context.Context, name string) ([]discovery.Peer, error) {
	msg, err := p.exchange(ctx, name, miekg.TypeSRV)
	if err != nil {
		return nil, err
	}
	glue := map[string][]string{}
	for _, rr := range msg.Extra {
		switch rr := rr.(type) {
		case *miekg.A:
			glue[strings.ToLower(rr.Hdr.Name)] = append(glue[strings.ToLower(rr.Hdr.Name)], rr.A.String())
		case *miekg.AAAA:
			glue[strings.ToLower(rr.Hdr.Name)] = append(glue[strings.ToLower(rr.Hdr.Name)], rr.AAAA.String())
		}
	}
	var peers []discovery.Peer
	for _, rr := range msg.Answer {
		srv, ok := rr.(*miekg.SRV)
		if !ok || srv.Target == "." || srv.Port == 0 {
			continue // "." means: no such service here
		}
		addrs := glue[strings.ToLower(srv.Target)]
		if len(addrs) == 0 {
			ps, err := p.lookupIPs(ctx, srv.Target, int(srv.Port))
			switch {
			case err == nil:
				for _, pe := range ps {
					addrs = append(addrs, pe.Addrs...)
				}
			case errors.Is(err, errNoRecords):
			default:
				return nil, fmt.Errorf("SRV target %s: %w", srv.Target, err)
			}
		}
		if len(addrs) == 0 {
			addrs = []string{strings.TrimSuffix(srv.Target, ".")}
		}
		sort.Strings(addrs)
		peers = append(peers, discovery.Peer{Addrs: addrs, Port: int(srv.Port), Source: Name})
	}
	if len(peers) == 0 {
		return nil, errNoRecords
	}
	return peers, nil
}

// ask returns the answer records of one question, or errNoRecords.
func (p *Provider) ask(ctx context.Context, name string, qtype uint16) ([]miekg.RR, error) {
	msg, err := p.exchange(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	if len(msg.Answer) == 0 {
		return nil, errNoRecords
	}
	return msg.Answer, nil
}

// exchange asks the servers in turn until one answers NOERROR or NXDOMAIN
// (NXDOMAIN is errNoRecords). Truncated answers are asked again over TCP.
func (p *Provider) exchange(ctx context.Context, name string, qtype uint16) (*miekg.Msg, error) {
	m := new(miekg.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(4096, false)
	var errs []error
	for _, server := range p.servers {
		r, _, err := p.client.ExchangeContext(ctx, m, server)
		if err == nil && r.Truncated {
			tcp := *p.client
			tcp.Net = "tcp"
			r, _, err = tcp.ExchangeContext(ctx, m, server)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
			continue
		}
		switch r.Rcode {
		case miekg.RcodeSuccess:
			return r, nil
		case miekg.RcodeNameError:
			return nil, errNoRecords
		default:
			errs = append(errs, fmt.Errorf("%s: %s", server, miekg.RcodeToString[r.Rcode]))
		}
	}
	return nil, fmt.Errorf("asking for %s %s: %w", strings.TrimSuffix(name, "."), miekg.TypeToString[qtype], errors.Join(errs...))
}
