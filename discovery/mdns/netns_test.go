package mdns

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
)

// inNetns marks the re-executed test binary running inside a fresh network
// namespace.
const inNetns = "MDNS_TEST_IN_NETNS"

// TestRunOverLoopbackMulticast runs three providers in one process over
// real multicast, hermetically: the test binary runs itself again in a new
// network namespace (unshare --net) whose only interface is loopback, with
// multicast turned on and a multicast route. Nothing leaves the namespace.
// It is the race-detector and goroutine-leak check of Run; the e2e tests
// (e2e/mdns_test.go) do the same across separate namespaces on a bridge.
func TestRunOverLoopbackMulticast(t *testing.T) {
	if os.Getenv(inNetns) == "" {
		reexecInNetns(t, "TestRunOverLoopbackMulticast")
		return
	}
	const (
		idA = "00000000-0000-4000-8000-00000000000a"
		idB = "00000000-0000-4000-8000-00000000000b"
		idC = "00000000-0000-4000-8000-00000000000c"
	)
	cfg := func(secret string) Config {
		return Config{Interface: "lo", Cluster: "blue", Secret: []byte(secret), Agent: "test",
			MinInterval: 100 * time.Millisecond, MaxInterval: 300 * time.Millisecond, Expiry: 1500 * time.Millisecond}
	}
	cfgA := cfg("s")
	cfgA.IPv6 = true // its IPv6 queries, answered or not, change nothing for IPv4
	a, logsA := newTestProvider(t, cfgA)
	b, _ := newTestProvider(t, cfg("s"))
	c, _ := newTestProvider(t, cfg("wrong"))
	a.Announce(testAnnouncement(idA, "a", "127.0.0.1", "10.99.0.1"))
	b.Announce(testAnnouncement(idB, "b", "10.99.0.2"))
	c.Announce(testAnnouncement(idC, "c", "10.99.0.3"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctxB, cancelB := context.WithCancel(ctx)
	defer cancelB()
	upA, upB := make(chan []discovery.Group), make(chan []discovery.Group)
	done := make(chan struct{}, 3)
	run := func(ctx context.Context, p *Provider, up chan []discovery.Group) {
		go func() { p.Run(ctx, up); done <- struct{}{} }()
	}
	run(ctx, a, upA)
	run(ctxB, b, upB)
	upC := make(chan []discovery.Group, 100)
	run(ctx, c, upC)
	go func() { // C's output is not checked; keep it flowing.
		for {
			select {
			case <-upC:
			case <-ctx.Done():
				return
			}
		}
	}()

	// waitPeers waits until up delivers exactly the peer ids want.
	waitPeers := func(who string, up chan []discovery.Group, want ...string) []discovery.Peer {
		t.Helper()
		deadline := time.After(10 * time.Second)
		var last []discovery.Peer
		for {
			select {
			case gs := <-up:
				if len(gs) != 1 || gs[0].Source != Name {
					t.Fatalf("%s: groups %+v", who, gs)
				}
				last = gs[0].Peers
				var ids []string
				for _, p := range last {
					ids = append(ids, p.ServerID)
				}
				if strings.Join(ids, ",") == strings.Join(want, ",") {
					return last
				}
			case <-deadline:
				t.Fatalf("%s: peers %+v, want ids %v\nlogs of A:\n%s", who, last, want, logsA)
			}
		}
	}
	peers := waitPeers("A", upA, idB)
	if p := peers[0]; p.Cluster != "blue" || p.Port != 29015 || p.DriverPort != 28015 || strings.Join(p.Addrs, ",") != "10.99.0.2" {
		t.Errorf("A sees B as %+v", p)
	}
	waitPeers("B", upB, idA)
	// C signs with another secret: A heard it and ignored it.
	logsA.WaitLine(t, 10*time.Second, "c-00000000", "does not verify")
	select {
	case gs := <-upA:
		t.Fatalf("A's peers changed: %+v", gs)
	default:
	}
	// B stops: A drops it once it expires.
	cancelB()
	waitPeers("A", upA)

	// IPv6 (no multicast route here) may fail: logged once at most.
	if n := strings.Count(logsA.String(), "cannot send a query on ipv6"); n > 1 {
		t.Errorf("the IPv6 failure was logged %d times", n)
	}
	cancel()
	for range 3 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
}

// reexecInNetns runs test again in a new network namespace with loopback
// up and multicast on, and fails with its output if it fails. It skips
// loudly without root, unshare or ip.
func reexecInNetns(t *testing.T, test string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("SKIPPED: %s needs root (it creates a network namespace); this real-multicast test did not run", test)
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: %s needs %s (util-linux, iproute2); this real-multicast test did not run", test, tool)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	script := `ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo && exec "$0" "$@"`
	cmd := exec.CommandContext(ctx, "unshare", "--net", "sh", "-c", script, exe,
		"-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), inNetns+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("%s in a new network namespace: %v\n%s", test, err, out)
	}
}

// TestLateNodeFoundByItsAnnouncement: A polls once, at start, and not
// again for an hour; B, started after that poll, is found all the same,
// from the announcement it multicasts when it starts. When B's server id
// changes, A drops the old one and takes the new one; when B stops, its
// goodbye removes it at once (A's expiry is an hour too).
func TestLateNodeFoundByItsAnnouncement(t *testing.T) {
	if os.Getenv(inNetns) == "" {
		reexecInNetns(t, "TestLateNodeFoundByItsAnnouncement")
		return
	}
	const idA, idB = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
	a, logsA := newTestProvider(t, Config{Interface: "lo", MinInterval: time.Hour, MaxInterval: time.Hour, Expiry: time.Hour})
	b, _ := newTestProvider(t, Config{Interface: "lo", MinInterval: 100 * time.Millisecond, MaxInterval: 200 * time.Millisecond})
	a.Announce(testAnnouncement(idA, "a", "10.99.0.1"))
	b.Announce(testAnnouncement(idB, "b", "10.99.0.2"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	upA := make(chan []discovery.Group)
	doneA, doneB := make(chan struct{}), make(chan struct{})
	go func() { a.Run(ctx, upA); close(doneA) }()
	next := func(what string) []discovery.Peer {
		t.Helper()
		select {
		case gs := <-upA:
			return gs[0].Peers
		case <-time.After(10 * time.Second):
			t.Fatalf("A: no group %s\n%s", what, logsA)
			return nil
		}
	}
	if peers := next("at start"); len(peers) != 0 {
		t.Fatalf("A starts with peers %+v", peers)
	}
	logsA.WaitLine(t, 10*time.Second, "mdns: queries sent")

	ctxB, cancelB := context.WithCancel(ctx)
	defer cancelB()
	upB := make(chan []discovery.Group, 100)
	go func() { b.Run(ctxB, upB); close(doneB) }()
	if peers := next("after B started"); len(peers) != 1 || peers[0].ServerID != idB {
		t.Fatalf("A: peers %+v, want B", peers)
	}
	// B's server gets a new id (a wiped data directory): its announcement
	// changes instance, and the old one says goodbye.
	const idB2 = "b2000000-0000-4000-8000-000000000000" // another instance name
	b.Announce(testAnnouncement(idB2, "b", "10.99.0.2"))
	for {
		peers := next("after B's new id")
		if len(peers) == 1 && peers[0].ServerID == idB2 {
			break
		}
		if len(peers) > 2 {
			t.Fatalf("A: peers %+v", peers)
		}
	}
	cancelB()
	<-doneB
	if peers := next("after B stopped"); len(peers) != 0 {
		t.Fatalf("A: peers %+v after B's goodbye", peers)
	}
	if n := strings.Count(logsA.String(), "mdns: queries sent"); n != 1 {
		t.Errorf("A polled %d times, want once", n)
	}
	cancel()
	<-doneA
}
