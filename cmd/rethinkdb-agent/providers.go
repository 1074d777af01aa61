package main

import (
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/discovery/dns"
	"github.com/rethinkdb-agent/rethinkdb-agent/discovery/dockerlabels"
	"github.com/rethinkdb-agent/rethinkdb-agent/discovery/mdns"
	"github.com/rethinkdb-agent/rethinkdb-agent/discovery/static"
	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// discoveryConfig is the discovery part of the command line.
type discoveryConfig struct {
	providers string
	cluster   string
	peers     listFlag
	peersFile string

	mdnsService, mdnsInterface, mdnsSecretFile string
	mdnsIPv6                                   bool

	dockerLabels  listFlag
	dockerNetwork string
	dockerResync  time.Duration

	dnsNames    listFlag
	dnsServers  listFlag
	dnsPort     int
	dnsInterval time.Duration

	// onSelf is set by manager when a provider announces the local
	// server (mdns); run wires it to agent.Config.OnSelf.
	onSelf func(rethink.Server)
}

func (d *discoveryConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&d.providers, "discovery", "static", "comma-separated discovery `PROVIDERS` (this build: "+providerNames+")")
	fs.StringVar(&d.cluster, "cluster", "", "the cluster's `NAME`: peers announcing another cluster name are never joined")
	fs.Var(&d.peers, "peer", "a peer's cluster `HOST:PORT` (port defaults to 29015); repeatable")
	fs.StringVar(&d.peersFile, "peers-file", "", "`PATH` of a file with one peer HOST:PORT per line, watched for changes")
	fs.StringVar(&d.mdnsService, "mdns-service", mdns.DefaultService, "mDNS (DNS-SD) service `TYPE` announced and browsed")
	fs.StringVar(&d.mdnsInterface, "mdns-interface", "", "network `INTERFACE` for mDNS (default: the default multicast interface; queries go on every multicast one)")
	fs.BoolVar(&d.mdnsIPv6, "mdns-ipv6", false, "also query mDNS over IPv6 (IPv4 is always used)")
	fs.Var(&d.dockerLabels, "docker-label", "docker: a `KEY=VALUE` (or KEY) label peer containers carry, e.g. io.rethinkdb.cluster=NAME; repeatable, all must match (default: same compose project and service as this container)")
	fs.StringVar(&d.dockerNetwork, "docker-network", "", "docker: the `NETWORK` whose container IPs are used (default: the networks this container shares with the peer)")
	fs.DurationVar(&d.dockerResync, "docker-resync", dockerlabels.DefaultResync, "docker: `PERIOD` of full listings besides the event stream")
	fs.Var(&d.dnsNames, "dns-name", "dns: a `NAME` whose A/AAAA records are peers (compose service, tasks.SERVICE, headless service), or srv+NAME for SRV records; repeatable")
	fs.Var(&d.dnsServers, "dns-server", "dns: a name server `HOST[:PORT]` to ask (default: those of /etc/resolv.conf, with its search list); repeatable")
	fs.IntVar(&d.dnsPort, "dns-port", 29015, "dns: the cluster `PORT` of peers found by A/AAAA records")
	fs.DurationVar(&d.dnsInterval, "dns-interval", dns.DefaultInterval, "dns: lookup `PERIOD`")
	fs.StringVar(&d.mdnsSecretFile, "mdns-secret-file", "", "`PATH` of the shared secret that signs mDNS announcements; only peers whose signature verifies are used (or set "+envPrefix+"MDNS_SECRET)")
}

func (d *discoveryConfig) names() []string {
	var out []string
	for _, p := range strings.Split(d.providers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (d *discoveryConfig) validate() error {
	for _, p := range d.names() {
		switch p {
		case static.Name, mdns.Name, dockerlabels.Name, dns.Name:
		default:
			return fmt.Errorf("--discovery: unknown provider %q (this build has: %s)", p, providerNames)
		}
	}
	if d.dockerResync <= 0 {
		return fmt.Errorf("--docker-resync %s: must be positive", d.dockerResync)
	}
	if d.dnsPort < 1 || d.dnsPort > 65535 {
		return fmt.Errorf("--dns-port %d: want 1-65535", d.dnsPort)
	}
	if d.dnsInterval <= 0 {
		return fmt.Errorf("--dns-interval %s: must be positive", d.dnsInterval)
	}
	return nil
}

// providerNames lists the providers --discovery accepts.
const providerNames = static.Name + ", " + mdns.Name + ", " + dockerlabels.Name + ", " + dns.Name

// manager builds the providers named by --discovery and their merger.
func (d *discoveryConfig) manager(log *slog.Logger) (*discovery.Manager, error) {
	var providers []discovery.Provider
	for _, name := range d.names() {
		switch name {
		case static.Name:
			p, err := static.New(d.peers, d.peersFile, log)
			if err != nil {
				return nil, err
			}
			providers = append(providers, p)
		case mdns.Name:
			secret, err := mdns.LoadSecret(d.mdnsSecretFile, envPrefix+"MDNS_SECRET")
			if err != nil {
				return nil, err
			}
			p, err := mdns.New(mdns.Config{Service: d.mdnsService, Interface: d.mdnsInterface, IPv6: d.mdnsIPv6,
				Cluster: d.cluster, Secret: secret, Agent: versionString(), Logger: log})
			if err != nil {
				return nil, err
			}
			d.onSelf = func(s rethink.Server) { p.Announce(mdnsAnnouncement(s)) }
			providers = append(providers, p)
		case dockerlabels.Name:
			p, err := dockerlabels.New(dockerlabels.Config{Selector: d.dockerLabels, Network: d.dockerNetwork,
				Resync: d.dockerResync, Logger: log})
			if err != nil {
				return nil, err
			}
			providers = append(providers, p)
		case dns.Name:
			p, err := dns.New(dns.Config{Names: d.dnsNames, Servers: d.dnsServers, Port: d.dnsPort,
				Interval: d.dnsInterval, Logger: log})
			if err != nil {
				return nil, err
			}
			providers = append(providers, p)
		}
	}
	m := discovery.NewManager(log, providers...)
	if d.cluster != "" {
		m.Fence = discovery.ClusterFence(d.cluster)
	}
	return m, nil
}

// mdnsAnnouncement is what the mDNS provider announces about the server.
func mdnsAnnouncement(s rethink.Server) mdns.Announcement {
	a := mdns.Announcement{ServerID: s.ID, Name: s.Name, ClusterPort: s.ClusterPort, DriverPort: s.DriverPort}
	for _, ca := range s.CanonicalAddresses {
		a.Addrs = append(a.Addrs, ca.Host)
	}
	return a
}
