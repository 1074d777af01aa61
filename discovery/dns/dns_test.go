package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// zone is a test name server's data: records by "name type", or an rcode
// to answer with instead. It serves UDP and TCP on the same port, and
// truncates UDP answers of more than maxUDP records, as real servers do.
type zone struct {
	mu      sync.Mutex
	records map[string][]string // "name. TYPE" -> RR strings
	rcodes  map[string]int      // name. -> rcode for every type
	drop    map[string]bool     // name. -> never answer (timeout)
	asked   map[string]int      // "net name. TYPE" -> count
	maxUDP  int
	addr    string
}

func newZone(t *testing.T) *zone {
	t.Helper()
	z := &zone{records: map[string][]string{}, rcodes: map[string]int{}, drop: map[string]bool{}, asked: map[string]int{}, maxUDP: 20}
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i > 20 {
			t.Fatal(err)
		}
	}
	z.addr = pc.LocalAddr().String()
	var servers []*miekg.Server
	for _, s := range []*miekg.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() { defer close(done); s.ActivateAndServe() }()
		<-started
		servers = append(servers, s)
		t.Cleanup(func() {
			s.Shutdown()
			<-done
		})
	}
	return z
}

func (z *zone) ServeDNS(w miekg.ResponseWriter, r *miekg.Msg) {
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	key := name + " " + miekg.TypeToString[q.Qtype]
	z.mu.Lock()
	z.asked[w.LocalAddr().Network()+" "+key]++
	drop, rcode, hasRcode := z.drop[name], z.rcodes[name], false
	if _, ok := z.rcodes[name]; ok {
		hasRcode = true
	}
	rrs := append([]string(nil), z.records[key]...)
	var extra []string
	if q.Qtype == miekg.TypeSRV {
		extra = append(extra, z.records[name+" EXTRA"]...)
	}
	udp := w.LocalAddr().Network() == "udp"
	z.mu.Unlock()
	if drop {
		return
	}
	m := new(miekg.Msg)
	m.SetReply(r)
	if hasRcode {
		m.Rcode = rcode
		w.WriteMsg(m)
		return
	}
	if udp && len(rrs) > z.maxUDP {
		m.Truncated = true
		w.WriteMsg(m)
		return
	}
	for _, s := range rrs {
		rr, err := miekg.NewRR(s)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	for _, s := range extra {
		rr, _ := miekg.NewRR(s)
		m.Extra = append(m.Extra, rr)
	}
	// A name with no records at all does not exist.
	if len(rrs) == 0 && !z.exists(name) {
		m.Rcode = miekg.RcodeNameError
	}
	w.WriteMsg(m)
}

func (z *zone) exists(name string) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	for k := range z.records {
		if strings.HasPrefix(k, name+" ") {
			return true
		}
	}
	return false
}

func (z *zone) set(name, typ string, rrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	key := miekg.Fqdn(name) + " " + typ
	if len(rrs) == 0 {
		delete(z.records, key)
		return
	}
	z.records[key] = rrs
}

func (z *zone) setRcode(name string, rcode int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if rcode < 0 {
		delete(z.rcodes, miekg.Fqdn(name))
		return
	}
	z.rcodes[miekg.Fqdn(name)] = rcode
}

func (z *zone) setDrop(name string, drop bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.drop[miekg.Fqdn(name)] = drop
}

func (z *zone) count(key string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.asked[key]
}

func endpoints(ps []discovery.Peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, strings.Join(p.Endpoints(), "+"))
	}
	sort.Strings(out)
	return out
}

func TestLookup(t *testing.T) {
	z := newZone(t)
	z.set("rethinkdb", "A", "rethinkdb. 0 IN A 10.0.0.2", "rethinkdb. 0 IN A 10.0.0.1")
	z.set("v6only", "AAAA", "v6only. 0 IN AAAA fd00::1")
	z.set("both", "A", "both. 0 IN A 10.0.0.3")
	z.set("both", "AAAA", "both. 0 IN AAAA fd00::3")
	z.set("alias", "A", "alias. 0 IN CNAME rethinkdb.", "rethinkdb. 0 IN A 10.0.0.1")
	z.set("nodata", "TXT", `nodata. 0 IN TXT "x"`)
	z.set("_rethinkdb._tcp.rethinkdb", "SRV",
		"_rethinkdb._tcp.rethinkdb. 0 IN SRV 0 0 29015 rethinkdb-0.rethinkdb.",
		"_rethinkdb._tcp.rethinkdb. 0 IN SRV 0 0 29016 rethinkdb-1.rethinkdb.",
		"_rethinkdb._tcp.rethinkdb. 0 IN SRV 0 0 29017 gone.rethinkdb.")
	z.set("_rethinkdb._tcp.rethinkdb", "EXTRA", "rethinkdb-0.rethinkdb. 0 IN A 10.1.0.1")
	z.set("rethinkdb-1.rethinkdb", "A", "rethinkdb-1.rethinkdb. 0 IN A 10.1.0.2")
	z.set("_none._tcp.x", "SRV", "_none._tcp.x. 0 IN SRV 0 0 0 .")
	var many []string
	for i := 1; i <= 60; i++ {
		many = append(many, fmt.Sprintf("many. 0 IN A 10.2.0.%d", i))
	}
	z.set("many", "A", many...)
	z.setRcode("broken", miekg.RcodeServerFailure)
	z.setRcode("refused", miekg.RcodeRefused)

	p, err := New(Config{Names: []string{"x"}, Servers: []string{z.addr}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query   string
		want    []string
		wantErr string
	}{
		{query: "rethinkdb", want: []string{"10.0.0.1:29015", "10.0.0.2:29015"}},
		{query: "rethinkdb.", want: []string{"10.0.0.1:29015", "10.0.0.2:29015"}},
		{query: "v6only", want: []string{"[fd00::1]:29015"}},
		{query: "both", want: []string{"10.0.0.3:29015", "[fd00::3]:29015"}},
		{query: "alias", want: []string{"10.0.0.1:29015"}},
		{query: "srv+_rethinkdb._tcp.rethinkdb", want: []string{"10.1.0.1:29015", "10.1.0.2:29016", "gone.rethinkdb:29017"}},
		{query: "srv+_none._tcp.x", want: nil},
		{query: "nxdomain", want: nil},
		{query: "nodata", want: nil},
		{query: "many", want: func() []string {
			var w []string
			for i := 1; i <= 60; i++ {
				w = append(w, fmt.Sprintf("10.2.0.%d:29015", i))
			}
			sort.Strings(w)
			return w
		}()},
		{query: "broken", wantErr: "asking for broken A: " + z.addr + ": SERVFAIL"},
		{query: "refused", wantErr: "REFUSED"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			q, err := ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			ps, err := p.Lookup(context.Background(), q)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := endpoints(ps); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			for _, pe := range ps {
				if pe.Source != Name {
					t.Errorf("source %q", pe.Source)
				}
			}
		})
	}
	if z.count("tcp many. A") == 0 {
		t.Error("a truncated answer was not asked again over TCP")
	}
}

func TestTimeoutIsAFailure(t *testing.T) {
	z := newZone(t)
	z.setDrop("slow", true)
	p, err := New(Config{Names: []string{"slow"}, Servers: []string{z.addr}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Lookup(context.Background(), Query{Name: "slow"})
	if err == nil || !strings.Contains(err.Error(), "asking for slow A") || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("err = %v", err)
	}
}

// The second server is asked when the first cannot answer.
func TestServerFallback(t *testing.T) {
	bad, good := newZone(t), newZone(t)
	bad.setRcode("rethinkdb", miekg.RcodeServerFailure)
	good.set("rethinkdb", "A", "rethinkdb. 0 IN A 10.0.0.1")
	p, err := New(Config{Names: []string{"rethinkdb"}, Servers: []string{bad.addr, good.addr}})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := p.Lookup(context.Background(), Query{Name: "rethinkdb"})
	if err != nil || !reflect.DeepEqual(endpoints(ps), []string{"10.0.0.1:29015"}) {
		t.Errorf("got %v, %v", endpoints(ps), err)
	}
}

// The search list of resolv.conf completes short names, as in Kubernetes.
func TestSearchList(t *testing.T) {
	z := newZone(t)
	z.set("rethinkdb.db.svc.cluster.local", "A", "rethinkdb.db.svc.cluster.local. 0 IN A 10.3.0.1")
	host, port, _ := net.SplitHostPort(z.addr)
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(rc, []byte("nameserver "+host+"\nsearch db.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"), 0o644)
	p, err := New(Config{Names: []string{"rethinkdb"}, ResolvConf: rc})
	if err != nil {
		t.Fatal(err)
	}
	p.servers = []string{net.JoinHostPort(host, port)} // resolv.conf has no ports
	ps, err := p.Lookup(context.Background(), Query{Name: "rethinkdb"})
	if err != nil || !reflect.DeepEqual(endpoints(ps), []string{"10.3.0.1:29015"}) {
		t.Errorf("got %v, %v", endpoints(ps), err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no names", Config{Servers: []string{"127.0.0.1"}}, "give --dns-name"},
		{"empty srv", Config{Names: []string{"srv+"}, Servers: []string{"127.0.0.1"}}, `--dns-name "srv+": empty name`},
		{"bad name", Config{Names: []string{"a b"}, Servers: []string{"127.0.0.1"}}, `--dns-name "a b" is not a domain name`},
		{"bad port", Config{Names: []string{"a"}, Port: 70000, Servers: []string{"127.0.0.1"}}, "--dns-port 70000"},
		{"bad interval", Config{Names: []string{"a"}, Interval: -time.Second, Servers: []string{"127.0.0.1"}}, "--dns-interval -1s"},
		{"bad server", Config{Names: []string{"a"}, Servers: []string{"1.2.3.4:x"}}, `--dns-server "1.2.3.4:x": bad port "x"`},
		{"no resolv.conf", Config{Names: []string{"a"}, ResolvConf: "/nonexistent/resolv.conf"}, "/nonexistent/resolv.conf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	for _, s := range []string{"10.0.0.1", "10.0.0.1:5353", "[fd00::1]:53", "fd00::1", "ns.example"} {
		if _, err := New(Config{Names: []string{"a"}, Servers: []string{s}}); err != nil {
			t.Errorf("server %q: %v", s, err)
		}
	}
}

// Run with the real Manager: names come and go between intervals; NXDOMAIN
// empties a name's group, SERVFAIL and timeouts keep it.
func TestRunKeepsUp(t *testing.T) {
	z := newZone(t)
	z.set("rethinkdb", "A", "rethinkdb. 0 IN A 10.0.0.1")
	z.set("_rethinkdb._tcp.other", "SRV", "_rethinkdb._tcp.other. 0 IN SRV 0 0 29016 other-0.")
	z.set("other-0", "A", "other-0. 0 IN A 10.9.0.1")
	logs := &testutil.SyncBuffer{}
	p, err := New(Config{
		Names:    []string{"rethinkdb", "srv+_rethinkdb._tcp.other"},
		Servers:  []string{z.addr},
		Interval: 20 * time.Millisecond,
		Timeout:  100 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	m := discovery.NewManager(nil, p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	wait := func(desc string, want ...string) {
		t.Helper()
		sort.Strings(want)
		deadline := time.After(10 * time.Second)
		var got []string
		for {
			got = got[:0]
			for _, pe := range m.Peers() {
				if pe.Source != Name {
					t.Errorf("source %q", pe.Source)
				}
				got = append(got, pe.Endpoints()...)
			}
			sort.Strings(got)
			if reflect.DeepEqual(got, want) || len(got) == 0 && len(want) == 0 {
				return
			}
			select {
			case <-m.Updates():
			case <-time.After(20 * time.Millisecond):
			case <-deadline:
				t.Fatalf("%s: peers %v, want %v\n%s", desc, got, want, logs)
			}
		}
	}
	wait("initial", "10.0.0.1:29015", "10.9.0.1:29016")

	z.set("rethinkdb", "A", "rethinkdb. 0 IN A 10.0.0.1", "rethinkdb. 0 IN A 10.0.0.2")
	wait("scaled up", "10.0.0.1:29015", "10.0.0.2:29015", "10.9.0.1:29016")

	// SERVFAIL: keep the last state, and say so once.
	z.setRcode("rethinkdb", miekg.RcodeServerFailure)
	z.set("other-0", "A", "other-0. 0 IN A 10.9.0.2")
	wait("SERVFAIL kept the name, the other name moved on", "10.0.0.1:29015", "10.0.0.2:29015", "10.9.0.2:29016")
	logs.WaitLine(t, 10*time.Second, "DNS lookup failed; keeping the last peers of this name", "name=rethinkdb", "SERVFAIL")

	// Timeout: the same.
	z.setRcode("rethinkdb", -1)
	z.setDrop("rethinkdb", true)
	logs.WaitLine(t, 10*time.Second, "i/o timeout")
	wait("timeout kept the name", "10.0.0.1:29015", "10.0.0.2:29015", "10.9.0.2:29016")
	if n := strings.Count(logs.String(), "SERVFAIL"); n != 1 {
		t.Errorf("SERVFAIL logged %d times, want once", n)
	}

	// Answers again, then NXDOMAIN: an empty group.
	z.setDrop("rethinkdb", false)
	z.set("rethinkdb", "A", "rethinkdb. 0 IN A 10.0.0.2")
	wait("back", "10.0.0.2:29015", "10.9.0.2:29016")
	logs.WaitLine(t, 10*time.Second, "DNS lookup works again")
	z.set("rethinkdb", "A")
	wait("NXDOMAIN", "10.9.0.2:29016")
	z.set("_rethinkdb._tcp.other", "SRV")
	wait("all gone")
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"rethinkdb", "srv+_rethinkdb._tcp.rethinkdb", "srv+", "tasks.rethinkdb", "a..b", "a b", "x."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuery(s)
		if err != nil {
			return
		}
		if q.Name == "" {
			t.Fatalf("%q: empty name accepted", s)
		}
		q2, err := ParseQuery(q.String())
		if err != nil || q2 != q {
			t.Errorf("%q -> %+v -> %q -> %+v, %v", s, q, q.String(), q2, err)
		}
	})
}
