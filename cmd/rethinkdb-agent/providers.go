package main

import (
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/rethinkdb-agent/rethinkdb-agent/discovery"
	"github.com/rethinkdb-agent/rethinkdb-agent/discovery/static"
)

// discoveryConfig is the discovery part of the command line.
type discoveryConfig struct {
	providers string
	cluster   string
	peers     listFlag
	peersFile string
}

func (d *discoveryConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&d.providers, "discovery", "static", "comma-separated discovery `PROVIDERS` (this build: static)")
	fs.StringVar(&d.cluster, "cluster", "", "the cluster's `NAME`: peers announcing another cluster name are never joined")
	fs.Var(&d.peers, "peer", "a peer's cluster `HOST:PORT` (port defaults to 29015); repeatable")
	fs.StringVar(&d.peersFile, "peers-file", "", "`PATH` of a file with one peer HOST:PORT per line, watched for changes")
}

func (d *discoveryConfig) names() []string {
	var out []string
	for _, p := range strings.Split(d.providers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (d *discoveryConfig) validate() error {
	for _, p := range d.names() {
		switch p {
		case static.Name:
		default:
			return fmt.Errorf("--discovery: unknown provider %q (this build has: static)", p)
		}
	}
	return nil
}

// manager builds the providers named by --discovery and their merger.
func (d *discoveryConfig) manager(log *slog.Logger) (*discovery.Manager, error) {
	var providers []discovery.Provider
	for _, name := range d.names() {
		switch name {
		case static.Name:
			p, err := static.New(d.peers, d.peersFile, log)
			if err != nil {
				return nil, err
			}
			providers = append(providers, p)
		}
	}
	m := discovery.NewManager(log, providers...)
	if d.cluster != "" {
		m.Fence = discovery.ClusterFence(d.cluster)
	}
	return m, nil
}
