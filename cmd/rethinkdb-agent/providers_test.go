package main

import (
	"context"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
)

// providersDNSServer answers A queries for rethinkdb. with ips.
func providersDNSServer(t *testing.T, ips ...string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &miekg.Server{PacketConn: pc, Handler: miekg.HandlerFunc(func(w miekg.ResponseWriter, r *miekg.Msg) {
		m := new(miekg.Msg)
		m.SetReply(r)
		if q := r.Question[0]; q.Name == "rethinkdb." && q.Qtype == miekg.TypeA {
			for _, ip := range ips {
				rr, _ := miekg.NewRR("rethinkdb. 0 IN A " + ip)
				m.Answer = append(m.Answer, rr)
			}
		} else if q.Name != "rethinkdb." {
			m.Rcode = miekg.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { srv.Shutdown(); <-done })
	return pc.LocalAddr().String()
}

// Several providers at once: the Manager merges them, and each peer says
// which providers found it.
func TestProvidersDNSAndStatic(t *testing.T) {
	addr := providersDNSServer(t, "10.0.0.1", "10.0.0.2")
	c, err := parseRun([]string{"--discovery", "dns,static", "--dns-name", "rethinkdb", "--dns-server", addr,
		"--dns-interval", "50ms", "--peer", "10.0.0.1", "--peer", "10.0.0.9"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.disc.manager(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	want := []discovery.Peer{
		{Addrs: []string{"10.0.0.1"}, Port: 29015, Source: "dns,static"},
		{Addrs: []string{"10.0.0.2"}, Port: 29015, Source: "dns"},
		{Addrs: []string{"10.0.0.9"}, Port: 29015, Source: "static"},
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-m.Updates():
			if reflect.DeepEqual(got, want) {
				return
			}
		case <-deadline:
			t.Fatalf("peers %+v, want %+v", m.Peers(), want)
		}
	}
}

func TestProvidersFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string // error; "" for none
	}{
		{[]string{"--discovery", "docker", "--docker-label", "io.rethinkdb.cluster=a", "--docker-network", "net"}, ""},
		{[]string{"--discovery", "dns,docker,static", "--dns-name", "srv+_rethinkdb._tcp.db", "--dns-server", "127.0.0.1", "--docker-label", "k"}, ""},
		{[]string{"--discovery", "dns", "--dns-server", "127.0.0.1"}, "give --dns-name"},
		{[]string{"--discovery", "dns", "--dns-name", "a", "--dns-server", "127.0.0.1", "--dns-port", "0"}, "--dns-port 0"},
		{[]string{"--discovery", "dns", "--dns-name", "a", "--dns-interval", "-1s"}, "--dns-interval -1s"},
		{[]string{"--discovery", "docker", "--docker-label", "=v"}, `--docker-label: label selector "=v": empty key`},
		{[]string{"--discovery", "docker", "--docker-label", "k", "--docker-resync", "0s"}, "--docker-resync 0s"},
		{[]string{"--discovery", "dnss"}, `unknown provider "dnss" (this build has: static, mdns, docker, dns)`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c, err := parseRun(tc.args, io.Discard)
			if err == nil {
				_, err = c.disc.manager(nil)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
