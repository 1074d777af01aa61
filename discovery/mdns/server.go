package mdns

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

	hmdns "github.com/hashicorp/mdns"
	"github.com/miekg/dns"
)

// zone serves the current announcement; nil answers nothing. The agent
// learns the local server after start, and may see it change, so the
// server keeps running and only its zone is swapped.
type zone struct {
	svc atomic.Pointer[hmdns.MDNSService]
}

func (z *zone) set(s *hmdns.MDNSService) { z.svc.Store(s) }

// Records implements hmdns.Zone. Names are matched without regard to case
// (RFC 6762 §16); the library compares them exactly, so a question that
// matches one of our names but for case is asked again with our spelling.
func (z *zone) Records(q dns.Question) []dns.RR {
	s := z.svc.Load()
	if s == nil {
		return nil
	}
	service := strings.Trim(s.Service, ".") + "." + s.Domain
	for _, n := range []string{s.Instance + "." + service, service, s.HostName, "_services._dns-sd._udp." + s.Domain} {
		if strings.EqualFold(q.Name, n) {
			q.Name = n
			break
		}
	}
	return s.Records(q)
}

// records are the records of an announcement (PTR, SRV, A/AAAA, TXT),
// nil when there is none.
func (z *zone) records() []dns.RR { return recordsOf(z.svc.Load()) }

// recordsOf are the records of s (PTR, SRV, A/AAAA, TXT); nil for nil.
func recordsOf(s *hmdns.MDNSService) []dns.RR {
	if s == nil {
		return nil
	}
	return s.Records(dns.Question{Name: strings.Trim(s.Service, ".") + "." + s.Domain, Qtype: dns.TypePTR, Qclass: dns.ClassINET})
}

var errNoAddr = errors.New("no address to announce")

// service4 builds the service for a; the caller holds p.mu.
func (p *Provider) service4(a Announcement) (*hmdns.MDNSService, Record, error) {
	id := strings.ToLower(a.ServerID)
	if !uuidRE.MatchString(id) {
		return nil, Record{}, fmt.Errorf("server id %q is not a uuid", a.ServerID)
	}
	if a.ClusterPort < 1 || a.ClusterPort > 65535 {
		return nil, Record{}, fmt.Errorf("cluster port %d", a.ClusterPort)
	}
	if a.DriverPort < 0 || a.DriverPort > 65535 {
		return nil, Record{}, fmt.Errorf("driver port %d", a.DriverPort)
	}
	addrs, fromIfaces := p.announceAddrs(a.Addrs)
	if len(addrs) == 0 {
		return nil, Record{}, fmt.Errorf("%w: canonical addresses %v have no usable IP and the interfaces none either", errNoAddr, a.Addrs)
	}
	if fromIfaces && !p.warnedLo {
		p.warnedLo = true
		p.log.Warn("mdns: the node announces no non-loopback IP; announcing the interface addresses instead (peers reach the node only if it listens on them)",
			"canonical_addresses", a.Addrs, "announced", addrs)
	}
	name := a.Name
	if text(&name, name) != nil {
		name = ""
	}
	rec := Record{ServerID: id, Name: name, Cluster: p.cfg.Cluster, Port: a.ClusterPort,
		DriverPort: a.DriverPort, Addrs: addrs, Agent: p.cfg.Agent}
	if len(rec.Agent) > 200 {
		rec.Agent = rec.Agent[:200]
	}
	var txt []string
	for {
		var err error
		txt, err = rec.Encode(p.cfg.Secret)
		var fe *FieldError
		if err == nil {
			break
		}
		if errors.As(err, &fe) && fe.Field == keyAddrs && len(rec.Addrs) > 1 {
			// Too many addresses for one TXT string: keep the first ones.
			rec.Addrs = rec.Addrs[:len(rec.Addrs)-1]
			continue
		}
		if errors.As(err, &fe) && fe.Field == keyName {
			rec.Name = ""
			continue
		}
		return nil, Record{}, err
	}
	ips := make([]net.IP, len(rec.Addrs))
	for i, ad := range rec.Addrs {
		ips[i] = net.IP(ad.AsSlice())
	}
	svc, err := hmdns.NewMDNSService(InstanceName(a.Name, id), p.cfg.Service, "local.", hostName(id), a.ClusterPort, ips, txt)
	if err != nil {
		return nil, Record{}, err
	}
	return svc, rec, nil
}

// responder runs the library's server. It is started at the first poll and
// retried at later ones when it cannot listen (e.g. no multicast route
// yet); it stops with Run.
type responder struct {
	p       *Provider
	srv     *hmdns.Server
	lastErr string
}

var mdnsGroup4 = netip.MustParseAddrPort("224.0.0.251:5353")

func (r *responder) ensure() {
	if r.srv != nil {
		return
	}
	// The library starts when IPv4 or IPv6 listens and hides which one
	// failed; we need IPv4, so try it first for a clear error.
	probe, err := net.ListenMulticastUDP("udp4", r.p.iface, net.UDPAddrFromAddrPort(mdnsGroup4))
	if err == nil {
		_ = probe.Close()
		r.srv, err = hmdns.NewServer(&hmdns.Config{
			Zone:   r.p.zone,
			Iface:  r.p.iface,
			Logger: slog.NewLogLogger(r.p.log.Handler(), slog.LevelDebug),
		})
	}
	if err != nil {
		if err.Error() != r.lastErr {
			r.lastErr = err.Error()
			r.p.log.Error("mdns: cannot listen on the multicast group; will retry (a multicast or default route is needed)",
				"group", mdnsGroup4, "interface", r.p.cfg.Interface, "err", err)
		}
		return
	}
	if r.lastErr != "" {
		r.p.log.Info("mdns: responder listening now")
		r.lastErr = ""
	}
}

func (r *responder) stop() {
	if r.srv != nil {
		_ = r.srv.Shutdown()
		r.srv = nil
	}
}
