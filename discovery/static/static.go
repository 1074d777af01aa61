// Package static provides peers given on the command line (--peer) and in a
// peers file that is watched for changes.
package static

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
)

// Name is the provider name, used as Peer.Source.
const Name = "static"

// Group sources.
const (
	SourceFlags = "static/flags"
	SourceFile  = "static/file"
)

// pollInterval is used only when the directory cannot be watched.
var pollInterval = 10 * time.Second

// Provider serves --peer values and a peers file.
type Provider struct {
	flags []discovery.Peer
	file  string
	log   *slog.Logger

	filePeers []discovery.Peer // last good state of the file
	lastErr   string           // last reload error logged, to log it once
}

var _ discovery.Provider = (*Provider)(nil)

// New parses peers ("host" or "host:port", default port 29015) and reads
// file if set (one host[:port] per line; # starts a comment; blank lines are
// ignored). Host names are kept as given: the agent resolves them when it
// uses them. A malformed entry or line, or an unreadable file, is an error
// naming it.
func New(peers []string, file string, logger *slog.Logger) (*Provider, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{file: file, log: logger.With("provider", Name)}
	for _, s := range peers {
		peer, err := ParsePeer(s)
		if err != nil {
			return nil, fmt.Errorf("--peer %q: %w", s, err)
		}
		p.flags = append(p.flags, peer)
	}
	if file != "" {
		ps, err := readFile(file)
		if err != nil {
			return nil, err
		}
		p.filePeers = ps
	}
	return p, nil
}

// Name implements discovery.Provider.
func (p *Provider) Name() string { return Name }

// ParsePeer parses "host", "host:port", "[v6]:port", "[v6]" or a bare IPv6
// address. The port defaults to 29015.
func ParsePeer(s string) (discovery.Peer, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return discovery.Peer{}, errors.New("empty address")
	}
	if strings.Contains(s, "://") {
		return discovery.Peer{}, errors.New("want host[:port], not a URL")
	}
	host, port := s, discovery.DefaultClusterPort
	switch {
	case net.ParseIP(s) != nil: // bare IPv4 or IPv6
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		host = s[1 : len(s)-1]
		if net.ParseIP(host) == nil {
			return discovery.Peer{}, fmt.Errorf("%q is not an IPv6 address", host)
		}
	case strings.Contains(s, ":"):
		h, ps, err := net.SplitHostPort(s)
		if err != nil {
			return discovery.Peer{}, fmt.Errorf("want host[:port]: %w", err)
		}
		if strings.HasPrefix(s, "[") && net.ParseIP(h) == nil {
			return discovery.Peer{}, fmt.Errorf("%q in brackets is not an IPv6 address", h)
		}
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			return discovery.Peer{}, fmt.Errorf("bad port %q", ps)
		}
		host, port = h, n
	}
	if host == "" {
		return discovery.Peer{}, errors.New("empty host")
	}
	if net.ParseIP(host) == nil && !validHostName(host) {
		return discovery.Peer{}, fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	return discovery.Peer{Addrs: []string{host}, Port: port, Source: Name}, nil
}

func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

// parse reads peers from data; errors name file:line.
func parse(file string, data []byte) ([]discovery.Peer, error) {
	var out []discovery.Peer
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		peer, err := ParsePeer(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q: %w", file, n, line, err)
		}
		out = append(out, peer)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

func readFile(file string) ([]discovery.Peer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("peers file: %w", err)
	}
	return parse(file, data)
}

func (p *Provider) groups() []discovery.Group {
	gs := []discovery.Group{{Source: SourceFlags, Peers: p.flags}}
	if p.file != "" {
		gs = append(gs, discovery.Group{Source: SourceFile, Peers: p.filePeers})
	}
	return gs
}

// Run sends the peers at once and again whenever the file changes. It
// watches the file's directory, not the file, so that atomic renames and
// Kubernetes ConfigMap updates (a symlink swap of ..data) are seen. A file
// that cannot be read or parsed is logged and its last good peers are kept.
func (p *Provider) Run(ctx context.Context, up chan<- []discovery.Group) {
	if !send(ctx, up, p.groups()) || p.file == "" {
		<-ctx.Done()
		return
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	var tick <-chan time.Time
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(filepath.Dir(p.file))
		if err != nil {
			_ = w.Close()
		}
	}
	if err != nil {
		p.log.Error("cannot watch the peers file; polling it", "file", p.file, "interval", pollInterval, "err", err)
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		tick = t.C
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	// The file may have changed between New and the watch.
	p.reload(ctx, up)
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			// Any change in the directory may be ours (symlink swaps
			// change other names); reload compares contents.
			p.reload(ctx, up)
		case err := <-errs:
			p.log.Warn("watching the peers file", "file", p.file, "err", err)
		case <-tick:
			p.reload(ctx, up)
		}
	}
}

// reload re-reads the file and sends the groups if the peers changed.
func (p *Provider) reload(ctx context.Context, up chan<- []discovery.Group) {
	ps, err := readFile(p.file)
	if err != nil {
		if err.Error() != p.lastErr {
			p.lastErr = err.Error()
			p.log.Error("peers file not loaded; keeping the last good peers", "file", p.file, "err", err)
		}
		return
	}
	p.lastErr = ""
	if reflect.DeepEqual(ps, p.filePeers) {
		return
	}
	p.filePeers = ps
	p.log.Info("peers file reloaded", "file", p.file, "peers", len(ps))
	send(ctx, up, p.groups())
}

func send(ctx context.Context, up chan<- []discovery.Group, gs []discovery.Group) bool {
	select {
	case up <- gs:
		return true
	case <-ctx.Done():
		return false
	}
}
