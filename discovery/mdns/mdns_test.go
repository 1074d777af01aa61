package mdns

import (
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTestProvider(t *testing.T, cfg Config) (*Provider, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.interfaces = func() ([]net.Interface, error) { return nil, nil }
	return p, logs
}

func testAnnouncement(id, name string, addrs ...string) Announcement {
	return Announcement{ServerID: id, Name: name, ClusterPort: 29015, DriverPort: 28015, Addrs: addrs}
}

// responseOf is what the library's server would answer to a PTR query.
func responseOf(t *testing.T, p *Provider) *dns.Msg {
	t.Helper()
	rrs := p.zone.Records(dns.Question{Name: p.service, Qtype: dns.TypePTR, Qclass: dns.ClassINET})
	if len(rrs) == 0 {
		t.Fatal("the zone answers nothing")
	}
	return &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Answer: rrs}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Service: "rethinkdb"}, `mdns service "rethinkdb"`},
		{Config{Service: "_rethinkdb._sctp"}, "_sctp"},
		{Config{Service: "_a.b._tcp"}, "_a.b._tcp"},
		{Config{Interface: "no-such-if0"}, `mdns interface "no-such-if0"`},
		{Config{MinInterval: time.Minute, MaxInterval: time.Second}, "max interval"},
		{Config{Cluster: "a\x00b"}, "cluster name"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", tc.cfg, err, tc.want)
		}
	}
	p, err := New(Config{Service: "_rethinkdb._tcp."})
	if err != nil || p.service != "_rethinkdb._tcp.local." {
		t.Errorf("New: %v, service %q", err, p.service)
	}
}

func TestInstanceName(t *testing.T) {
	for _, tc := range []struct{ name, id, want string }{
		{"server_1", testID, "server_1-8b2e4c1a"},
		{"node-10.0.0.1", testID, "node-10_0_0_1-8b2e4c1a"},
		{"", testID, "8b2e4c1a"},
		{strings.Repeat("x", 80), testID, strings.Repeat("x", 54) + "-8b2e4c1a"},
	} {
		got := InstanceName(tc.name, tc.id)
		if got != tc.want {
			t.Errorf("InstanceName(%q) = %q, want %q", tc.name, got, tc.want)
		}
		if _, ok := instanceOf(got+"._rethinkdb._tcp.local.", "_rethinkdb._tcp.local."); !ok {
			t.Errorf("%q is not one DNS label", got)
		}
	}
}

func TestAnnounceChoosesAddresses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string
		v6    bool
		want  []string // nil: nothing announced
	}{
		{"non-loopback canonical IPs", []string{"127.0.0.1", "10.1.2.3", "::1", "node1", "fd00::3"}, false, []string{"10.1.2.3"}},
		{"with IPv6", []string{"10.1.2.3", "fd00::3", "fe80::1"}, true, []string{"10.1.2.3", "fd00::3"}},
		{"loopback only and no interface", []string{"127.0.0.1"}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, logs := newTestProvider(t, Config{IPv6: tc.v6})
			p.Announce(testAnnouncement(testID, "server_1", tc.hosts...))
			svc := p.zone.svc.Load()
			if tc.want == nil {
				if svc != nil {
					t.Fatalf("announced %v", svc.IPs)
				}
				if !strings.Contains(logs.String(), "not announcing") {
					t.Errorf("no log saying why:\n%s", logs)
				}
				return
			}
			var got []string
			for _, ip := range svc.IPs {
				got = append(got, ip.String())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("announced %v, want %v", got, tc.want)
			}
			if svc.HostName != "rdb-"+testID+".local." || svc.Instance != "server_1-8b2e4c1a" {
				t.Errorf("host %q instance %q", svc.HostName, svc.Instance)
			}
		})
	}
}

func TestAnnounceRejectsBadInput(t *testing.T) {
	for _, a := range []Announcement{
		testAnnouncement("not-a-uuid", "s", "10.0.0.1"),
		{ServerID: testID, Addrs: []string{"10.0.0.1"}},
	} {
		p, logs := newTestProvider(t, Config{})
		p.Announce(testAnnouncement(testID, "ok", "10.0.0.1"))
		p.Announce(a)
		if p.zone.svc.Load() != nil {
			t.Errorf("%+v: still announcing", a)
		}
		if !strings.Contains(logs.String(), "not announcing") {
			t.Errorf("%+v: no log", a)
		}
	}
}

// TestAnswersKeepEveryAddress: the library's client keeps one A record
// per packet; our TXT carries all of them, and so does the result.
func TestAnswersKeepEveryAddress(t *testing.T) {
	a, _ := newTestProvider(t, Config{Cluster: "blue"})
	a.Announce(testAnnouncement(testID, "server_1", "10.213.0.2", "10.213.0.3", "10.213.0.4"))
	ans := parseAnswers(responseOf(t, a), a.service, "test")
	if len(ans) != 1 || ans[0].instance != "server_1-8b2e4c1a" || ans[0].srvPort != 29015 {
		t.Fatalf("answers %+v", ans)
	}
	b, _ := newTestProvider(t, Config{})
	peer, err := b.peerOf(ans[0])
	if err != nil {
		t.Fatal(err)
	}
	want := discovery.Peer{Addrs: []string{"10.213.0.2", "10.213.0.3", "10.213.0.4"}, Port: 29015,
		ServerID: testID, Cluster: "blue", DriverPort: 28015, Source: Name}
	if !reflect.DeepEqual(peer, want) {
		t.Errorf("peer\n got %+v\nwant %+v", peer, want)
	}
	// Our own announcement is not a peer.
	if _, err := a.peerOf(ans[0]); err != errSelf {
		t.Errorf("own announcement: %v", err)
	}
}

func TestParseAnswersFiltersOtherServices(t *testing.T) {
	a, _ := newTestProvider(t, Config{})
	a.Announce(testAnnouncement(testID, "server_1", "10.213.0.2"))
	ours := responseOf(t, a)
	txt := func(name string) dns.RR {
		return &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 120}, Txt: []string{"id=x"}}
	}
	for _, tc := range []struct {
		name string
		msg  *dns.Msg
		want int
	}{
		{"ours", ours, 1},
		{"in the additional section (Avahi)", &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Extra: ours.Answer}, 1},
		{"a query", &dns.Msg{Answer: ours.Answer}, 0},
		{"other service", &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: []dns.RR{txt("web._http._tcp.local.")}}, 0},
		{"service itself", &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: []dns.RR{txt("_rethinkdb._tcp.local.")}}, 0},
		{"dotted instance", &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: []dns.RR{txt("node-10.0.0.1._rethinkdb._tcp.local.")}}, 0},
		{"escaped dot is one label", &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: []dns.RR{txt(`node-10\.0._rethinkdb._tcp.local.`)}}, 1},
		{"other case", &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: []dns.RR{txt("n._RethinkDB._TCP.Local.")}}, 1},
		{"other domain", &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: []dns.RR{txt("n._rethinkdb._tcp.example.")}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Through the wire format, as received.
			pkt, err := tc.msg.Pack()
			if err != nil {
				t.Fatal(err)
			}
			var msg dns.Msg
			if err := msg.Unpack(pkt); err != nil {
				t.Fatal(err)
			}
			if got := parseAnswers(&msg, a.service, "test"); len(got) != tc.want {
				t.Errorf("%d answers, want %d: %+v", len(got), tc.want, got)
			}
		})
	}
}

func TestZoneIgnoresCase(t *testing.T) {
	a, _ := newTestProvider(t, Config{})
	a.Announce(testAnnouncement(testID, "Server_1", "10.213.0.2"))
	for _, q := range []dns.Question{
		{Name: "Server_1-8b2e4c1a._rethinkdb._tcp.local.", Qtype: dns.TypeTXT},
		{Name: "server_1-8b2e4c1a._RETHINKDB._tcp.local.", Qtype: dns.TypeSRV},
		{Name: "RDB-" + strings.ToUpper(testID) + ".local.", Qtype: dns.TypeA},
		{Name: "_rethinkdb._tcp.LOCAL.", Qtype: dns.TypePTR},
	} {
		if rrs := a.zone.Records(q); len(rrs) == 0 {
			t.Errorf("no answer to %v", q)
		}
	}
}

// TestBrowserFenceAndLogsOnce: bad and unsigned announcements are ignored
// and logged once per instance; a malformed one names the field.
func TestBrowserFenceAndLogsOnce(t *testing.T) {
	const idB, idC, idD = "00000000-0000-4000-8000-00000000000b", "00000000-0000-4000-8000-00000000000c", "00000000-0000-4000-8000-00000000000d"
	answerOf := func(secret, id, name string) answer {
		p, _ := newTestProvider(t, Config{Secret: []byte(secret)})
		p.Announce(testAnnouncement(id, name, "10.213.0.9"))
		ans := parseAnswers(responseOf(t, p), p.service, "10.213.0.9:5353")
		if len(ans) != 1 {
			t.Fatalf("%d answers", len(ans))
		}
		return ans[0]
	}
	good, bad, unsigned := answerOf("s", idB, "b"), answerOf("wrong", idC, "c"), answerOf("", idD, "d")
	malformed := good
	malformed.instance = "m-1"
	malformed.txt = append([]string{"port=99999"}, good.txt[1:]...)

	a, logs := newTestProvider(t, Config{Secret: []byte("s")})
	b := &browser{p: a, peers: map[string]*seenPeer{}, problems: map[string]problem{}}
	now := time.Now()
	for i := 0; i < 3; i++ {
		now = now.Add(time.Second)
		b.take(good, now)
		b.take(bad, now)
		b.take(unsigned, now)
		b.take(malformed, now)
	}
	if len(b.peers) != 1 || b.peers[good.instance] == nil {
		t.Errorf("peers %v, want only %s", b.peers, good.instance)
	}
	out := logs.String()
	for _, want := range []string{"does not verify", "is not signed", `instance=m-1`, `TXT field \"port\"`} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", want, n, out)
		}
	}
	if n := strings.Count(out, "found peer"); n != 1 {
		t.Errorf("found peer logged %d times", n)
	}
	// Not seen for Expiry: gone.
	if b.expire(now.Add(a.cfg.Expiry / 2)) {
		t.Error("expired too early")
	}
	if !b.expire(now.Add(a.cfg.Expiry+time.Second)) || len(b.peers) != 0 || len(b.problems) != 0 {
		t.Errorf("not expired: %v %v", b.peers, b.problems)
	}
	// A goodbye (TTL 0) removes at once.
	b.take(good, now)
	gb := good
	gb.ttl = 0
	if !b.take(gb, now) || len(b.peers) != 0 {
		t.Error("goodbye did not remove the peer")
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/secret"
	writeFile(t, file, "hunter2\n")
	t.Setenv("TEST_MDNS_SECRET", "from-env")
	if s, err := LoadSecret(file, "TEST_MDNS_SECRET"); err != nil || string(s) != "hunter2" {
		t.Errorf("file: %q %v", s, err)
	}
	if s, err := LoadSecret("", "TEST_MDNS_SECRET"); err != nil || string(s) != "from-env" {
		t.Errorf("env: %q %v", s, err)
	}
	if s, err := LoadSecret("", "TEST_MDNS_UNSET"); err != nil || s != nil {
		t.Errorf("unset: %q %v", s, err)
	}
	writeFile(t, file, "\n")
	if _, err := LoadSecret(file, ""); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
	if _, err := LoadSecret(dir+"/none", ""); err == nil {
		t.Error("missing file: no error")
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// FuzzParsePacket: any packet goes through unpacking, parseAnswers and
// peerOf without a panic, and every answer is of our service.
func FuzzParsePacket(f *testing.F) {
	p, err := New(Config{Secret: []byte("k")})
	if err != nil {
		f.Fatal(err)
	}
	p.interfaces = func() ([]net.Interface, error) { return nil, nil }
	p.Announce(testAnnouncement(testID, "server_1", "10.213.0.2", "10.213.0.3"))
	rrs := p.zone.records()
	for _, m := range []*dns.Msg{
		{MsgHdr: dns.MsgHdr{Response: true}, Answer: rrs},
		{MsgHdr: dns.MsgHdr{Response: true}, Extra: rrs},
		{MsgHdr: dns.MsgHdr{Response: true}, Answer: rrs[:1], Extra: rrs[1:]},
	} {
		pkt, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pkt)
	}
	other, _ := New(Config{})
	other.selfID = "none"
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var msg dns.Msg
		if msg.Unpack(pkt) != nil {
			return
		}
		for _, a := range parseAnswers(&msg, p.service, "fuzz") {
			if a.instance == "" || strings.Contains(strings.ReplaceAll(a.instance, `\.`, ""), ".") {
				t.Fatalf("instance %q is not one label", a.instance)
			}
			_, _ = other.peerOf(a)
			_, _ = p.peerOf(a)
		}
	})
}
