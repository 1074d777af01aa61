package dockerlabels

// Tests against the real Docker Engine of this machine (DOCKER_HOST or
// /var/run/docker.sock). They skip, loudly, when there is none; CI has one.
// The image is built FROM scratch from testdata/sleeper, compiled here:
// nothing is pulled.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"
)

// engine is a test's handle on the real Engine: an image, a network, and
// the containers it made, all removed at cleanup.
type engine struct {
	t       *testing.T
	c       *client.Client
	run     string // unique per run: names, labels
	image   string
	network string
}

func realEngine(t *testing.T) *engine {
	t.Helper()
	c, err := client.New(client.FromEnv)
	if err != nil {
		t.Skipf("!!! DOCKER UNAVAILABLE, SKIPPING the real-Engine tests: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, client.PingOptions{}); err != nil {
		c.Close()
		t.Skipf("!!! DOCKER UNAVAILABLE, SKIPPING the real-Engine tests (they run in CI): %v", err)
	}
	t.Cleanup(func() { c.Close() })
	b := make([]byte, 4)
	rand.Read(b)
	e := &engine{t: t, c: c, run: fmt.Sprintf("rdbagent-dltest-%d-%s", os.Getpid(), hex.EncodeToString(b))}
	e.buildImage()
	e.createNetwork()
	return e
}

func bg() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// buildImage compiles testdata/sleeper statically and builds an image FROM
// scratch with it.
func (e *engine) buildImage() {
	t := e.t
	t.Helper()
	dir := t.TempDir()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, "sleeper"), "./testdata/sleeper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the sleeper: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "sleeper"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY sleeper /sleeper\nENTRYPOINT [\"/sleeper\"]\n")},
		{"sleeper", 0o755, bin},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))})
		tw.Write(f.data)
	}
	tw.Close()

	e.image = e.run + ":test"
	ctx, cancel := bg()
	defer cancel()
	res, err := e.c.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags: []string{e.image}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
	})
	if err != nil {
		t.Fatalf("image build: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := bg()
		defer cancel()
		if _, err := e.c.ImageRemove(ctx, e.image, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Logf("cleanup: removing image %s: %v", e.image, err)
		}
	})
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var m struct {
			Error       string
			ErrorDetail struct{ Message string }
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("image build output: %v", err)
		}
		if m.Error != "" {
			t.Fatalf("image build: %s", m.Error)
		}
	}
}

func (e *engine) createNetwork() {
	e.t.Helper()
	e.network = e.run
	ctx, cancel := bg()
	defer cancel()
	if _, err := e.c.NetworkCreate(ctx, e.network, client.NetworkCreateOptions{Driver: "bridge"}); err != nil {
		e.t.Fatalf("network create: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := bg()
		defer cancel()
		if _, err := e.c.NetworkRemove(ctx, e.network, client.NetworkRemoveOptions{}); err != nil {
			e.t.Logf("cleanup: removing network %s: %v", e.network, err)
		}
	})
}

// start creates and starts a container of compose service svc with extra
// labels, and returns its id and IP on the test network. It is removed at
// cleanup. Safe for concurrent use.
func (e *engine) start(name, svc string, labels map[string]string) (id, ip string, err error) {
	all := map[string]string{
		LabelComposeProject: e.run,
		LabelComposeService: svc,
		LabelCluster:        e.run,
	}
	for k, v := range labels {
		all[k] = v
	}
	ctx, cancel := bg()
	defer cancel()
	res, err := e.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       e.run + "-" + name,
		Config:     &container.Config{Image: e.image, Labels: all},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(e.network)},
	})
	if err != nil {
		return "", "", fmt.Errorf("create %s: %w", name, err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := bg()
		defer cancel()
		if _, err := e.c.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			e.t.Logf("cleanup: removing container %s: %v", name, err)
		}
	})
	if _, err := e.c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return "", "", fmt.Errorf("start %s: %w", name, err)
	}
	in, err := e.c.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		return "", "", err
	}
	ep := in.Container.NetworkSettings.Networks[e.network]
	if ep == nil || !ep.IPAddress.IsValid() {
		return "", "", fmt.Errorf("%s has no IP on %s", name, e.network)
	}
	return res.ID, ep.IPAddress.String(), nil
}

func (e *engine) mustStart(name, svc string, labels map[string]string) (id, endpoint string) {
	e.t.Helper()
	id, ip, err := e.start(name, svc, labels)
	if err != nil {
		e.t.Fatal(err)
	}
	port := "29015"
	if p, ok := labels[LabelClusterPort]; ok {
		port = p
	}
	return id, net.JoinHostPort(ip, port) + "/" + e.run
}

func (e *engine) stop(id string) {
	e.t.Helper()
	ctx, cancel := bg()
	defer cancel()
	timeout := 5
	if _, err := e.c.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		e.t.Fatal(err)
	}
}

// engineProxy is an HTTP proxy in front of the Engine's API, so that a
// test can break the provider's connections (as an Engine restart or a
// socket-proxy restart would) and see its requests. Like
// tecnativa/docker-socket-proxy with CONTAINERS=1 EVENTS=1 (and its
// default PING=1 VERSION=1, POST=0), it lets only reads of those through:
// whatever else the provider asks is refused and recorded.
type engineProxy struct {
	srv     *httptest.Server
	down    atomic.Bool
	mu      sync.Mutex
	events  []url.Values // queries of the /events requests
	refused []string     // requests a read-only socket proxy would refuse
}

var readOnlyPaths = regexp.MustCompile(`^(/v[\d.]+)?/(_ping|version|containers/json|containers/[^/]+/json|events)$`)

func newEngineProxy(t *testing.T, c *client.Client) *engineProxy {
	t.Helper()
	host, err := client.ParseHostURL(c.DaemonHost())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	target := &url.URL{Scheme: "http", Host: host.Host}
	switch host.Scheme {
	case "tcp":
	case "unix":
		sock := host.Host
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		target.Host = "docker"
	default:
		t.Skipf("engine proxy: DOCKER_HOST scheme %q not supported by this test", host.Scheme)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = tr
	rp.FlushInterval = -1 // stream events as they come
	p := &engineProxy{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, `{"message":"engine proxy is down (test)"}`, http.StatusServiceUnavailable)
			return
		}
		if (r.Method != http.MethodGet && r.Method != http.MethodHead) || !readOnlyPaths.MatchString(r.URL.Path) {
			p.mu.Lock()
			p.refused = append(p.refused, r.Method+" "+r.URL.Path)
			p.mu.Unlock()
			http.Error(w, `{"message":"forbidden by the read-only proxy (test)"}`, http.StatusForbidden)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/events") {
			p.mu.Lock()
			p.events = append(p.events, r.URL.Query())
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
		tr.CloseIdleConnections()
	})
	return p
}

func (p *engineProxy) client(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(client.WithHost("tcp://" + p.srv.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (p *engineProxy) eventRequests() []url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]url.Values(nil), p.events...)
}

// The provider, in this process (on the host, so with an explicit
// selector), follows real containers: scaling up, stopping, and an event
// stream broken mid-test.
func TestRealEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("real Docker Engine test; not in -short")
	}
	e := realEngine(t)
	proxy := newEngineProxy(t, e.c)
	log, logs := newLogger()
	p, err := New(Config{
		Client:         proxy.client(t),
		Selector:       []string{LabelCluster + "=" + e.run},
		SelfCandidates: []string{},
		Logger:         log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("provider log:\n%s", logs)
		}
	}()

	// Two replicas before the provider starts, a non-matching container,
	// and a replica with a bad port label.
	_, ep1 := e.mustStart("rethinkdb-1", "rethinkdb", nil)
	_, ep2 := e.mustStart("rethinkdb-2", "rethinkdb", map[string]string{LabelClusterPort: "29016"})
	e.mustStart("other-1", "other", map[string]string{LabelCluster: "someone-else"})
	e.mustStart("rethinkdb-bad", "rethinkdb", map[string]string{LabelClusterPort: "not-a-port"})
	r := start(t, p)
	want := []string{ep1, ep2}
	r.wait("the replicas running at start", want...)
	logs.WaitLine(t, waitTimeout, "container="+e.run+"-rethinkdb-bad", `io.rethinkdb.cluster-port=\"not-a-port\"`)

	// Scale up by six at once: every one must appear.
	var mu sync.Mutex
	ids := map[string]string{}
	var g errgroup.Group
	for i := 3; i <= 8; i++ {
		g.Go(func() error {
			id, ip, err := e.start(fmt.Sprintf("rethinkdb-%d", i), "rethinkdb", nil)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			ids[id] = net.JoinHostPort(ip, "29015") + "/" + e.run
			want = append(want, ids[id])
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	r.wait("after scaling up to 8", want...)

	// Stop one: it disappears.
	var stopped string
	for id, ep := range ids {
		stopped = id
		want = remove(want, ep)
		break
	}
	e.stop(stopped)
	r.wait("after stopping one", want...)

	// Pause one: gone until unpaused.
	ctx, cancel := bg()
	defer cancel()
	pid1, _ := e.mustStart("rethinkdb-p", "rethinkdb", nil)
	in, err := e.c.ContainerInspect(ctx, pid1, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	epP := net.JoinHostPort(in.Container.NetworkSettings.Networks[e.network].IPAddress.String(), "29015") + "/" + e.run
	r.wait("with a new replica", append(want, epP)...)
	if _, err := e.c.ContainerPause(ctx, pid1, client.ContainerPauseOptions{}); err != nil {
		t.Fatal(err)
	}
	r.wait("after pausing it", want...)
	if _, err := e.c.ContainerUnpause(ctx, pid1, client.ContainerUnpauseOptions{}); err != nil {
		t.Fatal(err)
	}
	want = append(want, epP)
	r.wait("after unpausing it", want...)

	// Break the event stream while containers come and go: nothing lost.
	before := len(proxy.eventRequests())
	proxy.down.Store(true)
	proxy.srv.CloseClientConnections()
	_, ep9 := e.mustStart("rethinkdb-9", "rethinkdb", nil)
	want = append(want, ep9)
	for id, ep := range ids {
		if id != stopped {
			e.stop(id)
			want = remove(want, ep)
			break
		}
	}
	logs.WaitLine(t, waitTimeout, "Docker event stream ended")
	proxy.down.Store(false)
	r.wait("after the stream came back", want...)
	reqs := proxy.eventRequests()
	if len(reqs) <= before {
		t.Fatalf("no new /events request after the break")
	}
	last := reqs[len(reqs)-1]
	if last.Get("since") == "" || last.Get("since") == reqs[0].Get("since") {
		t.Errorf("reconnected with since=%q (first: %q): want the last event's time", last.Get("since"), reqs[0].Get("since"))
	}

	// And the stream works again: one more replica appears by its event.
	_, ep10 := e.mustStart("rethinkdb-10", "rethinkdb", nil)
	want = append(want, ep10)
	r.wait("a replica started after the reconnection", want...)

	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	if len(proxy.refused) > 0 {
		t.Errorf("the provider asked for more than a read-only socket proxy allows: %v", proxy.refused)
	}
}

// Default mode as it runs in a compose service: "self" is a real container,
// whose compose project/service and network choose the peers.
func TestRealEngineComposeDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("real Docker Engine test; not in -short")
	}
	e := realEngine(t)
	selfID, ep1 := e.mustStart("rethinkdb-1", "rethinkdb", map[string]string{LabelCluster: ""})
	_, ep2 := e.mustStart("rethinkdb-2", "rethinkdb", map[string]string{LabelCluster: ""})
	e.mustStart("web-1", "web", map[string]string{LabelCluster: ""})
	log, logs := newLogger()
	defer func() {
		if t.Failed() {
			t.Logf("provider log:\n%s", logs)
		}
	}()
	p, err := New(Config{Client: e.c, SelfCandidates: []string{selfID[:12]}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, p)
	// Cluster label "" counts as absent.
	strip := func(ep string) string { return strings.TrimSuffix(ep, "/"+e.run) }
	r.wait("the compose service's replicas", strip(ep1), strip(ep2))
}

func remove(s []string, v string) []string {
	out := s[:0:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}
