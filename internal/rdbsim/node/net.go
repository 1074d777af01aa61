package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

type hostPort struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

func (h hostPort) String() string { return net.JoinHostPort(h.Host, strconv.Itoa(h.Port)) }

// multiListener merges the listeners of one port on several addresses.
type multiListener struct {
	lns    []net.Listener
	ch     chan net.Conn
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	port   int
	closed error
}

func newMultiListener(lns []net.Listener, port int) *multiListener {
	m := &multiListener{lns: lns, ch: make(chan net.Conn), done: make(chan struct{}), port: port}
	for _, ln := range lns {
		m.wg.Add(1)
		go func(ln net.Listener) {
			defer m.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue
					}
					return
				}
				select {
				case m.ch <- c:
				case <-m.done:
					c.Close()
					return
				}
			}
		}(ln)
	}
	return m
}

func (m *multiListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.ch:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

// Close closes every listener and waits for their accept loops.
func (m *multiListener) Close() error {
	m.once.Do(func() {
		close(m.done)
		for _, ln := range m.lns {
			ln.Close()
		}
		m.wg.Wait()
	})
	return nil
}

func (m *multiListener) Addr() net.Addr { return m.lns[0].Addr() }
func (m *multiListener) Port() int      { return m.port }

// listenAll listens on port on every host ("" with all: every address).
// Port 0 picks one free port that is free on every host.
func listenAll(hosts []string, port int, all bool) (*multiListener, error) {
	if all {
		hosts = []string{""}
	}
	for attempt := 0; ; attempt++ {
		p := port
		var lns []net.Listener
		var err error
		for _, h := range hosts {
			var ln net.Listener
			ln, err = net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
			if err != nil {
				break
			}
			if p == 0 {
				p = ln.Addr().(*net.TCPAddr).Port
			}
			lns = append(lns, ln)
		}
		if err == nil {
			return newMultiListener(lns, p), nil
		}
		for _, ln := range lns {
			ln.Close()
		}
		if port == 0 && len(lns) > 0 && attempt < 10 {
			continue // the port picked on the first host was taken on another
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("error: TCP socket creation failed for port %d: Address already in use.", p)
		}
		return nil, fmt.Errorf("error: TCP socket creation failed for port %d: %w", p, err)
	}
}

// localAddrs lists the IP addresses configured on the machine's interfaces.
func localAddrs() []net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	var out []net.IP
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			out = append(out, ipn.IP)
		}
	}
	return out
}

// resolveBind turns --bind values into the hosts to listen on. As the real
// server, binding any loopback address binds every loopback address of the
// machine, and an address not configured on an interface is refused.
func resolveBind(bind []string) (hosts []string, all bool, err error) {
	local := localAddrs()
	set := map[string]bool{}
	for _, ip := range local {
		if ip.IsLoopback() {
			set[ip.String()] = true
		}
	}
	if len(set) == 0 {
		set["127.0.0.1"] = true
	}
	for _, b := range bind {
		if b == "all" {
			return nil, true, nil
		}
		ip := net.ParseIP(b)
		if ip == nil && b == "localhost" {
			continue
		}
		found := false
		for _, l := range local {
			if ip != nil && l.Equal(ip) {
				found = true
			}
		}
		if !found {
			return nil, false, fmt.Errorf("Could not find bind ip address '%s'", b)
		}
		set[ip.String()] = true
	}
	for h := range set {
		hosts = append(hosts, h)
	}
	sortHosts(hosts)
	return hosts, false, nil
}

// sortHosts orders addresses IPv4 first, then IPv6, each by text.
func sortHosts(h []string) {
	slices.SortFunc(h, func(a, b string) int {
		a4, b4 := !strings.Contains(a, ":"), !strings.Contains(b, ":")
		if a4 != b4 {
			if a4 {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
}

// openCluster resolves the bind addresses and opens the cluster port.
func (n *Node) openCluster() error {
	hosts, all, err := resolveBind(n.cfg.Bind)
	if err != nil {
		return err
	}
	n.bindHosts, n.bindAll = hosts, all
	ln, err := listenAll(hosts, n.cfg.ClusterPort, all)
	if err != nil {
		return err
	}
	n.clusterLn = ln
	n.clusterPort = ln.Port()
	n.canonical, err = n.canonicalAddrs()
	if err != nil {
		ln.Close()
		return err
	}
	return nil
}

// listenHosts is the address list of the "Listening on ... addresses" lines.
func (n *Node) listenHosts() string {
	if !n.bindAll {
		return strings.Join(n.bindHosts, ", ")
	}
	var hs []string
	for _, ip := range localAddrs() {
		if ip.IsLinkLocalUnicast() {
			continue
		}
		hs = append(hs, ip.String())
	}
	sortHosts(hs)
	return strings.Join(hs, ", ")
}

// canonicalAddrs is what peers are told to dial: --canonical-address values,
// or every address the cluster port listens on.
func (n *Node) canonicalAddrs() ([]hostPort, error) {
	var out []hostPort
	if len(n.cfg.CanonicalAddresses) > 0 {
		for _, a := range n.cfg.CanonicalAddresses {
			host, port := a, n.clusterPort
			if h, p, err := net.SplitHostPort(a); err == nil {
				pn, err := strconv.Atoi(p)
				if err != nil || pn <= 0 || pn > 65535 {
					return nil, fmt.Errorf("invalid canonical address %q: bad port", a)
				}
				host, port = h, pn
			}
			if host == "" {
				return nil, fmt.Errorf("invalid canonical address %q", a)
			}
			out = append(out, hostPort{Host: host, Port: port})
		}
		return out, nil
	}
	hosts := n.bindHosts
	if n.bindAll {
		hosts = nil
		for _, ip := range localAddrs() {
			if !ip.IsLinkLocalUnicast() {
				hosts = append(hosts, ip.String())
			}
		}
		sortHosts(hosts)
	}
	for _, h := range hosts {
		out = append(out, hostPort{Host: h, Port: n.clusterPort})
	}
	return out, nil
}

// tlsConfigs holds the cluster TLS settings; nil means plain TCP.
type tlsConfigs struct {
	server, client *tls.Config
}

func loadTLS(cfg Config) (*tlsConfigs, error) {
	set := 0
	for _, s := range []string{cfg.ClusterTLSKey, cfg.ClusterTLSCert, cfg.ClusterTLSCA} {
		if s != "" {
			set++
		}
	}
	if set == 0 {
		return nil, nil
	}
	if set != 3 {
		return nil, errors.New("--cluster-tls-key, --cluster-tls-cert and --cluster-tls-ca must be given together")
	}
	cert, err := tls.LoadX509KeyPair(cfg.ClusterTLSCert, cfg.ClusterTLSKey)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS key pair %s / %s: %w", cfg.ClusterTLSCert, cfg.ClusterTLSKey, err)
	}
	caPEM, err := os.ReadFile(cfg.ClusterTLSCA)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("cluster TLS CA %s: no certificate found", cfg.ClusterTLSCA)
	}
	// Peers are dialled by address and certificates rarely name them, so
	// the chain is checked against the CA but the host name is not (as in
	// RethinkDB, which only verifies the chain).
	verify := func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		if len(rawCerts) == 0 {
			return errors.New("peer sent no certificate")
		}
		c, err := x509.ParseCertificate(rawCerts[0])
		if err != nil {
			return err
		}
		inter := x509.NewCertPool()
		for _, r := range rawCerts[1:] {
			if ic, err := x509.ParseCertificate(r); err == nil {
				inter.AddCert(ic)
			}
		}
		_, err = c.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	return &tlsConfigs{
		server: &tls.Config{
			Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert,
			VerifyPeerCertificate: verify, MinVersion: tls.VersionTLS12,
		},
		client: &tls.Config{
			Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
			VerifyPeerCertificate: verify, MinVersion: tls.VersionTLS12,
		},
	}, nil
}
