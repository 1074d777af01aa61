package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Network is a set of network namespaces joined by a bridge: each Host is a
// separate machine with its own address, so servers can use the default
// ports (29015, 28015, 8080) and `--bind all`, as in Docker. The test
// process reaches every host through a veth of its own on the bridge.
//
// The bridge lives in a "switch" namespace of its own, not in the test's:
// there the host firewall (Docker sets FORWARD to DROP, and bridged
// traffic goes through it) does not apply, and nothing on the machine is
// changed but the one veth, which goes away with the switch.
//
// It needs root and iproute2; NewNetwork skips the test (loudly) otherwise.
// Each namespace gets a default route on its veth (multicast, e.g. mDNS,
// needs one: see /work/shared/NOTES.md).
type Network struct {
	t      testing.TB
	id     string // random hex, keeps names unique across parallel tests
	sw     string // the switch namespace
	prefix string // "10.x.y."

	mu    sync.Mutex
	hosts []*Host
}

// Host is one network namespace on a Network.
type Host struct {
	Name string
	// IP is the host's address on the bridge.
	IP string
	ns string
}

// ip runs `ip args...` and returns an error quoting its output.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NewNetwork creates the switch namespace and its bridge, removed at cleanup.
func NewNetwork(t testing.TB) *Network {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: harness.NewNetwork needs root to create network namespaces; this test did not run")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIPPED: harness.NewNetwork needs iproute2 (`ip`) to create network namespaces; this test did not run")
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	n := &Network{t: t, id: hex.EncodeToString(b)}
	n.sw = "rdb-" + n.id + "-sw"
	n.prefix = freeSubnet(t, b)
	if err := ip("netns", "add", n.sw); err != nil {
		t.Skipf("SKIPPED: cannot create a network namespace here: %v", err)
	}
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, h := range n.hosts {
			if err := ip("netns", "del", h.ns); err != nil {
				t.Errorf("harness: %v", err)
			}
		}
		// Deleting the switch deletes the bridge and every veth.
		if err := ip("netns", "del", n.sw); err != nil {
			t.Errorf("harness: %v", err)
		}
	})
	outside := "rh" + n.id
	for _, args := range [][]string{
		{"-n", n.sw, "link", "add", "br0", "type", "bridge"},
		{"-n", n.sw, "link", "set", "br0", "up"},
		{"link", "add", outside, "type", "veth", "peer", "name", "up0", "netns", n.sw},
		{"-n", n.sw, "link", "set", "up0", "master", "br0"},
		{"-n", n.sw, "link", "set", "up0", "up"},
		{"addr", "add", n.prefix + "1/24", "dev", outside},
		{"link", "set", outside, "up"},
	} {
		if err := ip(args...); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	return n
}

// freeSubnet picks a 10.x.y.0/24 that no local interface uses.
func freeSubnet(t testing.TB, seed []byte) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 256; i++ {
		prefix := fmt.Sprintf("10.%d.%d.", 200+int(seed[0]+byte(i))%50, seed[1]+byte(i))
		used := false
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && strings.HasPrefix(n.IP.String(), prefix) {
				used = true
			}
		}
		if !used {
			return prefix
		}
	}
	t.Fatal("harness: no free 10.x.y.0/24 subnet")
	return ""
}

// AddHost creates a namespace with one veth on the bridge, loopback up and
// a default route; its address is the next free one on the bridge.
func (n *Network) AddHost(name string) *Host {
	n.t.Helper()
	n.mu.Lock()
	k := len(n.hosts) + 2
	h := &Host{Name: name, IP: n.prefix + strconv.Itoa(k), ns: fmt.Sprintf("rdb-%s-%d", n.id, k)}
	if err := ip("netns", "add", h.ns); err != nil {
		n.mu.Unlock()
		n.t.Fatalf("harness: %v", err)
	}
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()

	port := fmt.Sprintf("p%d", k)
	for _, args := range [][]string{
		{"-n", n.sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.ns},
		{"-n", n.sw, "link", "set", port, "master", "br0"},
		{"-n", n.sw, "link", "set", port, "up"},
		{"-n", h.ns, "addr", "add", h.IP + "/24", "dev", "eth0"},
		{"-n", h.ns, "link", "set", "eth0", "up"},
		{"-n", h.ns, "link", "set", "lo", "up"},
		{"-n", h.ns, "route", "add", "default", "dev", "eth0"},
	} {
		if err := ip(args...); err != nil {
			n.t.Fatalf("harness: host %s: %v", name, err)
		}
	}
	return h
}

// command returns the program and arguments that run path inside h
// (`ip netns exec` execs the program: the pid is the program's own).
func (h *Host) command(path string, args ...string) (string, []string) {
	if h == nil {
		return path, args
	}
	return "ip", append([]string{"netns", "exec", h.ns, path}, args...)
}

// StartProcessOn is StartProcess inside host h.
func (c *Cluster) StartProcessOn(h *Host, name, path string, args ...string) *Process {
	c.t.Helper()
	prog, argv := h.command(path, args...)
	p, err := c.start(name+"@"+h.Name, prog, argv...)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// AddAddress adds an address (CIDR) to a device of the host, e.g.
// AddAddress("127.0.0.11/8", "lo").
func (h *Host) AddAddress(t testing.TB, cidr, dev string) {
	t.Helper()
	if err := ip("-n", h.ns, "addr", "add", cidr, "dev", dev); err != nil {
		t.Fatalf("harness: host %s: %v", h.Name, err)
	}
}
