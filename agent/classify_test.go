package agent

import (
	"context"
	"net/netip"
	"testing"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// With --bind all a real 2.4.4 lists every local IP as a canonical address,
// loopback too (our_peer_address in src/rpc/connectivity/cluster.cc; see
// system-tables/*_server_status.json for 127.0.0.1 and ::1). The local
// server's loopback endpoint is the local server, never a foreign peer.
func TestClassifyOwnLoopback(t *testing.T) {
	self := rethink.Server{ID: "self", Name: "s1", ClusterPort: 29015, CanonicalAddresses: []rethink.Addr{
		{Host: "10.0.0.2", Port: 29015}, {Host: "127.0.0.1", Port: 29015}, {Host: "::1", Port: 29015}}}
	v := rethink.View{Self: self, Servers: []rethink.Server{self}}
	tests := []struct {
		name string
		peer discovery.Peer
		want PeerState
	}{
		{"own loopback", discovery.Peer{Addrs: []string{"127.0.0.1"}, Port: 29015}, PeerLocal},
		{"own ipv6 loopback", discovery.Peer{Addrs: []string{"::1"}, Port: 29015}, PeerLocal},
		{"own routable address", discovery.Peer{Addrs: []string{"10.0.0.2"}, Port: 29015}, PeerLocal},
		// Another node on this host (tests, one-host setups): another port.
		{"loopback on another port", discovery.Peer{Addrs: []string{"127.0.0.1"}, Port: 29016}, PeerForeign},
		{"another host", discovery.Peer{Addrs: []string{"10.0.0.3"}, Port: 29015}, PeerForeign},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClassifier(nil, func(context.Context, netip.AddrPort) error { return nil })
			pvs := c.classify(context.Background(), v, []discovery.Peer{tc.peer})
			if len(pvs) != 1 || pvs[0].State != tc.want {
				t.Errorf("got %+v, want state %s", pvs, tc.want)
			}
		})
	}
}
