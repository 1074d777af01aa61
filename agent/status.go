package agent

import (
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// Record is one entry of the audit trail: a change the agent made (or, under
// the report policy, would have made) and the bridges it ran.
type Record struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	ID     string    `json:"id,omitempty"`
	Before string    `json:"before,omitempty"`
	After  string    `json:"after,omitempty"`
	Reason string    `json:"reason,omitempty"`
	DryRun bool      `json:"dry_run,omitempty"`
}

// PeerStatus is one discovered peer as the agent classified it.
type PeerStatus struct {
	Key       string    `json:"key"`
	Source    string    `json:"source"`
	Endpoints []string  `json:"endpoints"`
	State     PeerState `json:"state"`
	ServerID  string    `json:"server_id,omitempty"`
	Reason    string    `json:"reason,omitempty"`
}

// Status is a snapshot of what the agent knows and did.
type Status struct {
	NodeError string         `json:"node_error,omitempty"`
	View      *rethink.View  `json:"view,omitempty"`
	Peers     []PeerStatus   `json:"peers"`
	Proxy     string         `json:"proxy,omitempty"`
	Recent    []Record       `json:"recent"`
	Counts    map[string]int `json:"counts"`
}

const maxRecords = 100

// Status returns a copy of the current status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	s.Peers = append([]PeerStatus(nil), s.Peers...)
	s.Recent = append([]Record(nil), s.Recent...)
	counts := make(map[string]int, len(s.Counts))
	for k, v := range s.Counts {
		counts[k] = v
	}
	s.Counts = counts
	return s
}

func (a *Agent) setNodeStatus(v rethink.View, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.status.NodeError = err.Error()
		a.status.View = nil
		return
	}
	a.status.NodeError = ""
	a.status.View = &v
}

func (a *Agent) setPeerStatus(pvs []peerView) {
	out := make([]PeerStatus, 0, len(pvs))
	for _, pv := range pvs {
		eps := make([]string, 0, len(pv.Endpoints))
		for _, ep := range pv.Endpoints {
			eps = append(eps, hostPort(ep))
		}
		out = append(out, PeerStatus{Key: pv.Peer.Key(), Source: pv.Peer.Source, Endpoints: eps,
			State: pv.State, ServerID: pv.ServerID, Reason: pv.Reason})
	}
	sortPeers(out)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Peers = out
}

func (a *Agent) setProxy(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Proxy = id
}

func (a *Agent) record(r Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Recent = append(a.status.Recent, r)
	if n := len(a.status.Recent); n > maxRecords {
		a.status.Recent = a.status.Recent[n-maxRecords:]
	}
	if a.status.Counts == nil {
		a.status.Counts = map[string]int{}
	}
	a.status.Counts[r.Kind]++
}
