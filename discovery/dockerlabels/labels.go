package dockerlabels

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/network"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
)

// Labels the provider reads.
const (
	LabelCluster        = "io.rethinkdb.cluster"      // the peer's cluster name (Peer.Cluster)
	LabelClusterPort    = "io.rethinkdb.cluster-port" // the peer's cluster port (default 29015)
	LabelComposeProject = "com.docker.compose.project"
	LabelComposeService = "com.docker.compose.service"
)

// Selector is a set of label terms a container must all carry: KEY=VALUE
// (the label has that value) or KEY alone (the label is present).
type Selector []Term

// Term is one label condition; Any means "present, with any value".
type Term struct {
	Key, Value string
	Any        bool
}

func (t Term) String() string {
	if t.Any {
		return t.Key
	}
	return t.Key + "=" + t.Value
}

// ParseSelector parses KEY=VALUE or KEY terms (the --docker-label flag).
// The value may itself contain '='. Keys must be non-empty and free of
// spaces and control characters.
func ParseSelector(terms []string) (Selector, error) {
	var s Selector
	for _, raw := range terms {
		k, v, hasValue := strings.Cut(raw, "=")
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, fmt.Errorf("label selector %q: empty key (want KEY=VALUE or KEY)", raw)
		}
		if i := strings.IndexFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
			return nil, fmt.Errorf("label selector %q: key has a space or control character", raw)
		}
		s = append(s, Term{Key: k, Value: v, Any: !hasValue})
	}
	return s, nil
}

// Match tells whether labels satisfy every term.
func (s Selector) Match(labels map[string]string) bool {
	for _, t := range s {
		v, ok := labels[t.Key]
		if !ok || (!t.Any && v != t.Value) {
			return false
		}
	}
	return true
}

// filterValues are the Engine's "label" filter values for s.
func (s Selector) filterValues() []string {
	out := make([]string, 0, len(s))
	for _, t := range s {
		out = append(out, t.String())
	}
	return out
}

func (s Selector) String() string { return strings.Join(s.filterValues(), ",") }

// composeSelector selects the containers of the same compose project and
// service as a container with labels; ok is false when labels are not a
// compose container's.
func composeSelector(labels map[string]string) (Selector, bool) {
	proj, svc := labels[LabelComposeProject], labels[LabelComposeService]
	if proj == "" || svc == "" {
		return nil, false
	}
	return Selector{{Key: LabelComposeProject, Value: proj}, {Key: LabelComposeService, Value: svc}}, true
}

// PeerLabels are what a container's labels say about the RethinkDB server
// in it.
type PeerLabels struct {
	Cluster string // "" when the label is absent
	Port    int    // cluster port
}

// ParsePeerLabels reads io.rethinkdb.cluster-port (default 29015) and
// io.rethinkdb.cluster. A malformed port is an error naming the label.
func ParsePeerLabels(labels map[string]string) (PeerLabels, error) {
	pl := PeerLabels{Cluster: strings.TrimSpace(labels[LabelCluster]), Port: discovery.DefaultClusterPort}
	if raw, ok := labels[LabelClusterPort]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil || n < 1 || n > 65535 {
			return PeerLabels{}, fmt.Errorf("label %s=%q: want a port number 1-65535", LabelClusterPort, raw)
		}
		pl.Port = n
	}
	return pl, nil
}

// addresses returns the container's IPs on the networks use accepts, in
// network name order (IPv4 if the endpoint has one, else its global IPv6).
func addresses(nets map[string]*network.EndpointSettings, use func(name, id string) bool) []string {
	names := make([]string, 0, len(nets))
	for name := range nets {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []string
	for _, name := range names {
		ep := nets[name]
		if ep == nil || !use(name, ep.NetworkID) {
			continue
		}
		switch {
		case ep.IPAddress.IsValid() && !ep.IPAddress.IsUnspecified():
			out = append(out, ep.IPAddress.String())
		case ep.GlobalIPv6Address.IsValid() && !ep.GlobalIPv6Address.IsUnspecified():
			out = append(out, ep.GlobalIPv6Address.String())
		}
	}
	return out
}

// containerIDRe finds a full container id in a cgroup path or a bind-mount
// source (/var/lib/docker/containers/<id>/hostname, /docker/<id>,
// docker-<id>.scope).
var containerIDRe = regexp.MustCompile(`(?:/containers/|/docker/|docker-)([0-9a-f]{64})(?:[/.\s]|$)`)

// hostnameIDRe: Docker's default hostname is the id's first 12 characters.
var hostnameIDRe = regexp.MustCompile(`^[0-9a-f]{12,64}$`)

// errNotInContainer says how to configure the provider outside a container.
var errNotInContainer = errors.New("docker discovery: not running in a Docker container (no container id in /proc/self/mountinfo, /proc/self/cgroup or the host name), so there is no compose project and service to match: give a selector with --docker-label KEY=VALUE (e.g. io.rethinkdb.cluster=NAME)")

// ContainerIDCandidates returns the ids that may be the current process's
// container, best first: full ids from mountinfo (works with cgroup v2 and
// a private cgroup namespace), then from cgroup (v1), then the host name if
// it looks like an id prefix. The caller confirms them with the Engine.
func ContainerIDCandidates(mountinfo, cgroup, hostname string) []string {
	var out []string
	add := func(id string) {
		for _, o := range out {
			if strings.HasPrefix(o, id) {
				return
			}
		}
		out = append(out, id)
	}
	// In mountinfo only Docker's own bind mounts count: a container that
	// mounts /var/lib/docker sees every other container's paths too.
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || (f[4] != "/etc/hostname" && f[4] != "/etc/hosts" && f[4] != "/etc/resolv.conf") {
			continue
		}
		if m := containerIDRe.FindStringSubmatch(f[3]); m != nil {
			add(m[1])
		}
	}
	for _, line := range strings.Split(cgroup, "\n") {
		if m := containerIDRe.FindStringSubmatch(line); m != nil {
			add(m[1])
		}
	}
	if hostnameIDRe.MatchString(hostname) {
		add(hostname)
	}
	return out
}

// selfCandidates reads this process's mountinfo, cgroup and host name.
func selfCandidates() []string {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	cg, _ := os.ReadFile("/proc/self/cgroup")
	hn, _ := os.Hostname()
	return ContainerIDCandidates(string(mi), string(cg), hn)
}
