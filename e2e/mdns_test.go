package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/discovery/mdns"
	"github.com/rethinkdb-agent/rethinkdb-agent/e2e/harness"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// The mDNS scenarios run the discovery provider on separate hosts (network
// namespaces on one bridge, see harness.Network) over real multicast: this
// test binary runs itself on each host in helper mode (TestMDNSHelper,
// selected by mdnsHelperEnv), where a discovery.Manager with the mDNS
// provider announces a made-up server and prints the merged peer set.

// mdnsHelperEnv holds the helper's JSON configuration (mdnsHelperConfig).
const mdnsHelperEnv = "E2E_MDNS_HELPER"

// mdnsTimeout bounds discovery: the first polls come every second.
const mdnsTimeout = 20 * time.Second

type mdnsHelperConfig struct {
	ID, Name, Cluster, Addr string
	SecretFile              string // the secret never goes through argv or env
}

// TestMDNSHelper is not a test: it is the helper process (see above). It
// prints "PEERS=<ids, comma-separated>;" whenever the merged set changes.
func TestMDNSHelper(t *testing.T) {
	raw := os.Getenv(mdnsHelperEnv)
	if raw == "" {
		t.Skip("helper process for the mDNS scenarios; runs only when they start it")
	}
	var cfg mdnsHelperConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug}))
	secret, err := mdns.LoadSecret(cfg.SecretFile, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := mdns.New(mdns.Config{Interface: "eth0", Cluster: cfg.Cluster, Secret: secret, Agent: "e2e",
		MinInterval: 200 * time.Millisecond, MaxInterval: time.Second, Expiry: 3 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// As the agent does through OnSelf: its canonical addresses include
	// loopback, which is not announced.
	p.Announce(mdns.Announcement{ServerID: cfg.ID, Name: cfg.Name, ClusterPort: 29015, DriverPort: 28015,
		Addrs: []string{"127.0.0.1", cfg.Addr}})
	m := discovery.NewManager(log, p)
	if cfg.Cluster != "" {
		m.Fence = discovery.ClusterFence(cfg.Cluster)
	}
	go func() {
		for peers := range m.Updates() {
			var ids []string
			for _, peer := range peers {
				ids = append(ids, peer.ServerID+"@"+strings.Join(peer.Endpoints(), "+"))
			}
			fmt.Printf("PEERS=%s;\n", strings.Join(ids, ","))
		}
	}()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// startMDNSHelper runs the helper on h.
func startMDNSHelper(t *testing.T, c *harness.Cluster, h *harness.Host, cfg mdnsHelperConfig) *harness.Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = h.IP
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c.StartProcessOn(h, cfg.Name, "env", mdnsHelperEnv+"="+string(raw), exe,
		"-test.run=^TestMDNSHelper$", "-test.count=1")
}

func mdnsID(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012x", n) }

// peersLine is the helper's line for exactly one peer: id on h, port 29015.
func peersLine(id string, h *harness.Host) string {
	return "PEERS=" + id + "@" + h.IP + ":29015;"
}

// TestMDNSAcrossHosts: agents on separate hosts find each other over real
// multicast; a peer of another cluster, one signed with another secret and
// an unsigned one are heard, logged once and never used; a peer that stops
// announcing expires.
func TestMDNSAcrossHosts(t *testing.T) {
	t.Parallel()
	network := harness.NewNetwork(t)
	c := harness.New(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("blue-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type node struct {
		name, cluster, secret string
	}
	nodes := []node{
		{"a", "blue", secret},
		{"b", "blue", secret},
		{"red", "red", secret},    // another cluster, signed with the right secret
		{"forger", "blue", wrong}, // the right cluster, the wrong secret
		{"plain", "blue", ""},     // the right cluster, unsigned
	}
	hosts := map[string]*harness.Host{}
	procs := map[string]*harness.Process{}
	for i, n := range nodes {
		h := network.AddHost(n.name)
		hosts[n.name] = h
		procs[n.name] = startMDNSHelper(t, c, h, mdnsHelperConfig{ID: mdnsID(i + 1), Name: n.name, Cluster: n.cluster, SecretFile: n.secret})
	}
	a, b := procs["a"], procs["b"]

	a.WaitLog(t, peersLine(mdnsID(2), hosts["b"]), mdnsTimeout)
	b.WaitLog(t, peersLine(mdnsID(1), hosts["a"]), mdnsTimeout)

	// A heard the others and said why it ignores them.
	a.WaitLog(t, `ignoring discovered peer" peer=id:`+mdnsID(3), mdnsTimeout) // the Manager's cluster fence
	a.WaitLogMatch(t, regexp.MustCompile(`ignoring announcement.* instance=forger-00000000 .*does not verify`), mdnsTimeout)
	a.WaitLogMatch(t, regexp.MustCompile(`ignoring announcement.* instance=plain-00000000 .*is not signed`), mdnsTimeout)
	b.WaitLogMatch(t, regexp.MustCompile(`ignoring announcement.* instance=forger-00000000 .*does not verify`), mdnsTimeout)

	// Over several more polls: logged once per peer, never used.
	onlyB := func() (bool, string) {
		out := a.Output()
		for _, who := range []string{"forger", "plain"} {
			if n := strings.Count(out, "instance="+who+"-00000000"); n != 1 {
				return false, fmt.Sprintf("%s logged %d times", who, n)
			}
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "PEERS=") && line != "PEERS=;" && line != peersLine(mdnsID(2), hosts["b"]) {
				return false, "A used another peer: " + line
			}
		}
		return true, ""
	}
	harness.Consistently(t, 3*time.Second, onlyB)

	// B dies without a goodbye (SIGKILL): A forgets it after the expiry.
	// (A clean stop says goodbye and is dropped at once: the provider's
	// TestLateNodeFoundByItsAnnouncement.)
	b.Kill()
	a.WaitLog(t, "mdns: peer expired", mdnsTimeout)
	harness.Eventually(t, mdnsTimeout, func() (bool, string) {
		lines := regexp.MustCompile(`(?m)^PEERS=.*;$`).FindAllString(a.Output(), -1)
		return len(lines) > 0 && lines[len(lines)-1] == "PEERS=;", fmt.Sprintf("A's peer sets: %q", lines)
	})
}

// TestMDNSAvahiSeesTheAnnouncement: Debian's Avahi, an independent mDNS
// implementation, browses and resolves what the agent announces: instance,
// host name, address, port and TXT. Avahi runs on a host of its own with a
// private D-Bus system bus (nothing on the machine's bus is touched).
func TestMDNSAvahiSeesTheAnnouncement(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"avahi-daemon", "avahi-browse", "dbus-daemon"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: needs %s (apt-get install avahi-daemon avahi-utils dbus); this test did not run", tool)
		}
	}
	network := harness.NewNetwork(t)
	c := harness.New(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // dbus-daemon drops to its own user
		t.Fatal(err)
	}
	bus := filepath.Join(dir, "bus")
	busAddr := "DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + bus
	dbus := c.StartProcess("dbus", "dbus-daemon", "--system", "--nofork", "--nopidfile", "--address=unix:path="+bus, "--print-address")
	dbus.WaitLog(t, "unix:path="+bus, mdnsTimeout)

	// Avahi's own host; no publishing of its own, IPv4 on eth0 only.
	conf := filepath.Join(dir, "avahi-daemon.conf")
	if err := os.WriteFile(conf, []byte("[server]\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=eth0\nenable-dbus=yes\n"+
		"[wide-area]\nenable-wide-area=no\n[publish]\ndisable-publishing=yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	av := network.AddHost("avahi")
	// A private /run (for its pid file and socket) in a mount namespace of
	// its own, so that it runs beside any Avahi of the machine's and leaves
	// nothing behind.
	avahi := c.StartProcessOn(av, "avahi-daemon", "unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs tmpfs /run && mkdir /run/avahi-daemon && exec env "$0" avahi-daemon --no-drop-root --no-chroot --no-rlimits -f "$1"`,
		busAddr, conf)
	avahi.WaitLog(t, "Server startup complete", mdnsTimeout)

	h := network.AddHost("agent")
	agent := startMDNSHelper(t, c, h, mdnsHelperConfig{ID: mdnsID(7), Name: "server_7", Cluster: "blue"})
	agent.WaitLog(t, "mdns: announcing the local server", mdnsTimeout)

	// Resolution can take more than one try (NOTES.md): retry with a deadline.
	want := regexp.MustCompile(`(?m)^=;eth0;IPv4;server_7-00000000;_rethinkdb\._tcp;local;rdb-` + mdnsID(7) + `\.local;` +
		regexp.QuoteMeta(h.IP) + `;29015;(.*)$`)
	var last string
	harness.Eventually(t, mdnsTimeout, func() (bool, string) {
		browse := c.StartProcessOn(av, "avahi-browse", "env", busAddr,
			"avahi-browse", "--resolve", "--parsable", "--terminate", "_rethinkdb._tcp")
		select {
		case <-browse.Exited():
		case <-time.After(10 * time.Second):
			browse.Kill()
		}
		out := browse.Output()
		last = out
		m := want.FindStringSubmatch(out)
		if m == nil {
			return false, "avahi-browse did not resolve the agent's service yet:\n" + out
		}
		for _, kv := range []string{`"txtvers=1"`, `"id=` + mdnsID(7) + `"`, `"cluster=blue"`, `"port=29015"`, `"driver=28015"`, `"addrs=` + h.IP + `"`} {
			if !strings.Contains(m[1], kv) {
				return false, "TXT lacks " + kv + ": " + m[1]
			}
		}
		return true, ""
	})
	t.Logf("avahi-browse:\n%s", last)
}

// TestMDNSAgentsMergeAcrossHosts: three lone nodes, each on its own host
// with an agent beside it configured with nothing but --discovery mdns
// (the other flags only make the test faster), become one cluster: each
// agent announces its node (OnSelf) and finds the others over multicast.
func TestMDNSAgentsMergeAcrossHosts(t *testing.T) {
	t.Parallel()
	network := harness.NewNetwork(t)
	c := harness.New(t)
	ss := map[string]*r.Session{}
	var agents []*harness.Process
	for i := 1; i <= 3; i++ {
		h := network.AddHost(fmt.Sprintf("h%d", i))
		n := c.StartServer(harness.ServerOptions{Name: fmt.Sprintf("server_%d", i), Host: h})
		ss[n.ServerName] = n.Session(t)
		agents = append(agents, c.StartProcessOn(h, "agent-"+n.ServerName, agentBinary(t), "run", "--discovery", "mdns",
			"--rethinkdb", harness.Binary(t), "--interval", "1s", "--fallback-after", "5s", "--log-level", "debug"))
	}
	for _, a := range agents {
		a.WaitLog(t, "mdns: announcing the local server", agentMergeTimeout)
	}
	waitOneCluster(t, 3, ss)
	for _, a := range agents {
		if n := strings.Count(a.Output(), "mdns: found peer"); n < 2 {
			t.Errorf("%s found %d peers over mDNS, want 2", a.Name, n)
		}
	}
	if proxiesStarted(agents...) < 1 {
		t.Error("no agent logged a bridge")
	}
}
