package mdns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

var (
	mdnsAddr4 = &net.UDPAddr{IP: net.ParseIP("224.0.0.251"), Port: 5353}
	mdnsAddr6 = &net.UDPAddr{IP: net.ParseIP("ff02::fb"), Port: 5353}
)

// answer is one announcement read from a response packet.
type answer struct {
	instance string   // the instance label, as received
	txt      []string // the TXT strings
	ttl      uint32   // the TXT record's TTL; 0 is a goodbye
	srvPort  int      // the SRV port in the same packet, 0 if none
	from     string   // the responder's address, for logs
}

// parseAnswers returns the announcements of service ("_x._tcp.local.") in a
// response: every TXT record, in any section, whose owner is exactly one
// label below the service. Records of other services, and names with more
// labels (an unescaped dot in an instance name), are not ours.
func parseAnswers(msg *dns.Msg, service string, from string) []answer {
	if !msg.Response || msg.Opcode != dns.OpcodeQuery || msg.Rcode != dns.RcodeSuccess {
		return nil
	}
	rrs := make([]dns.RR, 0, len(msg.Answer)+len(msg.Extra))
	rrs = append(append(rrs, msg.Answer...), msg.Extra...)
	srv := map[string]int{}
	for _, rr := range rrs {
		if s, ok := rr.(*dns.SRV); ok {
			srv[strings.ToLower(s.Hdr.Name)] = int(s.Port)
		}
	}
	var out []answer
	for _, rr := range rrs {
		t, ok := rr.(*dns.TXT)
		if !ok {
			continue
		}
		inst, ok := instanceOf(t.Hdr.Name, service)
		if !ok {
			continue
		}
		out = append(out, answer{instance: inst, txt: t.Txt, ttl: t.Hdr.Ttl,
			srvPort: srv[strings.ToLower(t.Hdr.Name)], from: from})
	}
	return out
}

// instanceOf returns the instance label of name when name is
// <label>.<service>.
func instanceOf(name, service string) (string, bool) {
	if _, ok := dns.IsDomainName(name); !ok {
		return "", false
	}
	if !dns.IsFqdn(name) || dns.CountLabel(name) != dns.CountLabel(service)+1 || !dns.IsSubDomain(service, name) {
		return "", false
	}
	labels := dns.SplitDomainName(name)
	if len(labels) == 0 || labels[0] == "" {
		return "", false
	}
	return labels[0], true
}

// querier sends PTR queries for the service and reads the answers.
type querier struct {
	p     *Provider
	found chan answer // buffered; readers block on it rather than drop

	wg      sync.WaitGroup
	conns   []*qconn // query sockets (ephemeral ports)
	v6      *qconn
	mc4     *qconn // bound to 224.0.0.251:5353: announcements in and out
	opened4 bool
	errs    map[string]string // last error logged per what, to log once
}

type qconn struct {
	family string // "ipv4" or "ipv6"
	c      *net.UDPConn
	pc4    *ipv4.PacketConn
	pc6    *ipv6.PacketConn
}

// logOnce logs err under what unless it is the one logged last time.
func (q *querier) logOnce(what string, err error, args ...any) {
	if q.errs == nil {
		q.errs = map[string]string{}
	}
	if err == nil {
		delete(q.errs, what)
		return
	}
	if q.errs[what] == err.Error() {
		return
	}
	q.errs[what] = err.Error()
	q.p.log.Warn("mdns: "+what, append(args, "err", err)...)
}

// ensure opens the sockets not open yet (IPv4; IPv6 when enabled) and
// starts a reader on each. A family that fails is logged and retried at
// the next poll; it never stops the other.
func (q *querier) ensure(ctx context.Context) {
	if !q.opened4 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		q.logOnce("cannot open the IPv4 query socket", err)
		if err == nil {
			pc := ipv4.NewPacketConn(c)
			// RFC 6762 §11: TTL 255; loopback so that a responder on
			// this host (another agent in the same namespace) answers.
			_ = pc.SetMulticastTTL(255)
			_ = pc.SetMulticastLoopback(true)
			q.start(ctx, &qconn{family: "ipv4", c: c, pc4: pc})
			q.opened4 = true
		}
	}
	if q.mc4 == nil {
		c, err := net.ListenMulticastUDP("udp4", q.p.iface, mdnsAddr4)
		q.logOnce("cannot listen for announcements on the IPv4 multicast group; relying on polls", err)
		if err == nil {
			pc := ipv4.NewPacketConn(c)
			_ = pc.SetMulticastTTL(255)
			_ = pc.SetMulticastLoopback(true)
			q.mc4 = &qconn{family: "ipv4", c: c, pc4: pc}
			q.wg.Go(func() { q.read(ctx, q.mc4) })
		}
	}
	if q.p.cfg.IPv6 && q.v6 == nil {
		c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6unspecified})
		q.logOnce("cannot open the IPv6 query socket; querying IPv4 only", err)
		if err == nil {
			pc := ipv6.NewPacketConn(c)
			_ = pc.SetMulticastHopLimit(255)
			_ = pc.SetMulticastLoopback(true)
			q.v6 = &qconn{family: "ipv6", c: c, pc6: pc}
			q.start(ctx, q.v6)
		}
	}
}

func (q *querier) start(ctx context.Context, qc *qconn) {
	q.conns = append(q.conns, qc)
	q.wg.Go(func() { q.read(ctx, qc) })
}

// read parses every packet and hands each announcement to Run, waiting
// for Run (or the end) rather than dropping it.
func (q *querier) read(ctx context.Context, qc *qconn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := qc.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || isClosed(err) {
				return
			}
			continue
		}
		var msg dns.Msg
		if err := msg.Unpack(buf[:n]); err != nil {
			q.p.log.Debug("mdns: unreadable packet", "from", from, "err", err)
			continue
		}
		for _, a := range parseAnswers(&msg, q.p.service, from.String()) {
			select {
			case q.found <- a:
			case <-ctx.Done():
				return
			}
		}
	}
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// query sends one PTR question for the service on every target interface
// of every open family. Send errors are logged once per family and
// interface, and do not stop the other sends.
func (q *querier) query() {
	m := new(dns.Msg)
	m.SetQuestion(q.p.service, dns.TypePTR)
	m.RecursionDesired = false
	pkt, err := m.Pack()
	if err != nil {
		q.p.log.Error("mdns: cannot pack the query", "err", err)
		return
	}
	for _, qc := range q.conns {
		ifs := q.targets(qc.family)
		if len(ifs) == 0 {
			ifs = []*net.Interface{nil} // the kernel's default
		}
		for _, ifi := range ifs {
			name := "default"
			if ifi != nil {
				name = ifi.Name
			}
			q.logOnce("cannot send a query on "+qc.family+" "+name, q.send(qc, ifi, pkt))
		}
	}
	q.p.log.Debug("mdns: queries sent", "service", q.p.service)
}

func (q *querier) send(qc *qconn, ifi *net.Interface, pkt []byte) error {
	if qc.pc4 != nil {
		if ifi != nil {
			if err := qc.pc4.SetMulticastInterface(ifi); err != nil {
				return err
			}
		}
		_, err := qc.c.WriteToUDP(pkt, mdnsAddr4)
		return err
	}
	dst := *mdnsAddr6
	if ifi != nil {
		if err := qc.pc6.SetMulticastInterface(ifi); err != nil {
			return err
		}
		dst.Zone = ifi.Name
	}
	_, err := qc.c.WriteToUDP(pkt, &dst)
	return err
}

// targets are the interfaces to query on: the configured one, or every up
// multicast interface with an address of the family.
func (q *querier) targets(family string) []*net.Interface {
	if q.p.iface != nil {
		return []*net.Interface{q.p.iface}
	}
	all, err := q.p.interfaces()
	if err != nil {
		return nil
	}
	var out []*net.Interface
	for _, ifi := range multicastInterfaces(all) {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			ipn, ok := ad.(*net.IPNet)
			if !ok {
				continue
			}
			a, _ := netip.AddrFromSlice(ipn.IP)
			if a.Unmap().Is4() == (family == "ipv4") {
				out = append(out, &ifi)
				break
			}
		}
	}
	return out
}

// announce multicasts rrs as an unsolicited response (RFC 6762 §8.3),
// from port 5353 as receivers require (§11); with goodbye, with TTL 0
// (§10.1) so that peers drop the records at once. Peers hear it on their
// own group socket, so a node started late is found without waiting for
// their next (slow) poll.
func (q *querier) announce(rrs []dns.RR, goodbye bool) {
	if q.mc4 == nil || len(rrs) == 0 {
		return
	}
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Compress: true}
	for _, rr := range rrs {
		rr = dns.Copy(rr)
		if goodbye {
			rr.Header().Ttl = 0
		}
		m.Answer = append(m.Answer, rr)
	}
	pkt, err := m.Pack()
	if err != nil {
		q.p.log.Error("mdns: cannot pack the announcement", "err", err)
		return
	}
	ifs := q.targets("ipv4")
	if len(ifs) == 0 {
		ifs = []*net.Interface{nil}
	}
	for _, ifi := range ifs {
		name := "default"
		if ifi != nil {
			name = ifi.Name
		}
		q.logOnce("cannot send the announcement on "+name, q.send(q.mc4, ifi, pkt))
	}
}

// close closes the sockets and waits for the readers.
func (q *querier) close() {
	for _, qc := range q.conns {
		_ = qc.c.Close()
	}
	if q.mc4 != nil {
		_ = q.mc4.c.Close()
	}
	q.wg.Wait()
}
