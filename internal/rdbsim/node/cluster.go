package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

// The cluster protocol between sims: frames of a 4-byte big-endian length
// followed by a JSON object. A connection starts with both sides sending
// "hello"; the dialler checks it reached the server it expected and sends
// "go"; then the side with the lower id (the pair's arbiter) answers "ok" or
// "reject", so two simultaneous dials leave exactly one connection. After
// that the sides exchange "meta" (metadata to merge), "state" (the sender's
// ports and its connected peers, from which everyone learns whom to dial),
// "req"/"resp" (table operations forwarded to a table's primary) and "data"
// (a hosted table changed, for changefeeds).

const (
	maxFrame         = 64 << 20
	handshakeTimeout = 5 * time.Second
	dialTimeout      = 3 * time.Second
	backoffMin       = 50 * time.Millisecond
	backoffMax       = 15 * time.Second
)

// nodeInfo describes a node to its peers: the fields of its server_status.
type nodeInfo struct {
	ID          string     `json:"id"`
	Proxy       bool       `json:"proxy,omitempty"`
	Name        string     `json:"name,omitempty"`
	ClusterPort int        `json:"cluster_port"`
	Canonical   []hostPort `json:"canonical"`
	Hostname    string     `json:"hostname"`
	ReqlPort    int        `json:"reql_port"`
	HTTPPort    int        `json:"http_port"`
	NoHTTP      bool       `json:"no_http,omitempty"`
	Argv        []string   `json:"argv"`
	PID         int        `json:"pid"`
	Started     float64    `json:"started"`
	CacheMB     float64    `json:"cache_mb"`
}

// peerAd advertises one connected peer of the sender.
type peerAd struct {
	ID    string   `json:"id"`
	Proxy bool     `json:"proxy,omitempty"`
	Addrs []string `json:"addrs"`
}

type frame struct {
	T     string    `json:"t"`
	Info  *nodeInfo `json:"info,omitempty"`
	Meta  *Meta     `json:"meta,omitempty"`
	Peers []peerAd  `json:"peers,omitempty"`
	RID   uint64    `json:"rid,omitempty"`
	Req   *rpcReq   `json:"req,omitempty"`
	Resp  *rpcResp  `json:"resp,omitempty"`
	Table string    `json:"table,omitempty"`
}

func writeFrame(w io.Writer, b []byte) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func readFrame(r io.Reader) (*frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if size > maxFrame {
		return nil, fmt.Errorf("cluster frame of %d bytes is too large", size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	f := &frame{}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("bad cluster frame: %w", err)
	}
	return f, nil
}

func encode(f *frame) []byte {
	b, err := json.Marshal(f)
	if err != nil {
		// Frames hold only JSON-compatible values.
		panic(fmt.Sprintf("encoding cluster frame: %v", err))
	}
	return b
}

// peerConn is an established connection to a peer.
type peerConn struct {
	n     *Node
	c     net.Conn
	r     *bufio.Reader
	info  nodeInfo // latest info the peer sent
	peers []peerAd // the peer's connected peers, oldest first
	since time.Time
	out   chan []byte
	done  chan struct{}
	once  sync.Once

	pmu     sync.Mutex
	nextRID uint64
	pending map[uint64]chan *rpcResp
}

func (pc *peerConn) send(b []byte) {
	select {
	case pc.out <- b:
	case <-pc.done:
	default:
		// A peer that does not read its frames is broken; dropping the
		// connection lets both sides redial.
		pc.close()
	}
}

func (pc *peerConn) close() {
	pc.once.Do(func() {
		close(pc.done)
		pc.c.Close()
	})
}

func (pc *peerConn) writeLoop() {
	w := bufio.NewWriter(pc.c)
	for {
		select {
		case b := <-pc.out:
			if err := writeFrame(w, b); err != nil {
				pc.close()
				return
			}
			for more := true; more; {
				select {
				case b := <-pc.out:
					if err := writeFrame(w, b); err != nil {
						pc.close()
						return
					}
				default:
					more = false
				}
			}
			if err := w.Flush(); err != nil {
				pc.close()
				return
			}
		case <-pc.done:
			return
		}
	}
}

func (n *Node) selfInfo() *nodeInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.selfInfoLocked()
}

func (n *Node) selfInfoLocked() *nodeInfo {
	info := &nodeInfo{
		ID: n.id, Proxy: n.proxy, ClusterPort: n.clusterPort, Canonical: n.canonical,
		Hostname: n.hostname, ReqlPort: n.driverPort, HTTPPort: n.httpPort, NoHTTP: n.cfg.NoHTTPAdmin,
		Argv: n.cfg.Argv, PID: n.pid, Started: epoch(n.started), CacheMB: n.processCacheMB(),
	}
	if s := n.meta.Servers[n.id]; s != nil && !n.proxy {
		info.Name = s.Name
	}
	return info
}

func (n *Node) processCacheMB() float64 {
	if n.cfg.CacheSizeMB > 0 {
		return n.cfg.CacheSizeMB
	}
	return autoCacheMB
}

var (
	errSelf     = errors.New("connected to itself")
	errDup      = errors.New("already connected to that peer")
	errRefused  = errors.New("peer refused")
	errShutdown = errors.New("node is shutting down")
)

func (n *Node) acceptLoop(ctx context.Context) {
	for {
		c, err := n.clusterLn.Accept()
		if err != nil {
			return
		}
		n.goFunc(func() {
			if n.tls != nil {
				c = tls.Server(c, n.tls.server)
			}
			_, _ = n.handshake(ctx, c, "", "", false)
		})
	}
}

// handshake runs the hello exchange on c. dialled is the address c was
// dialled at ("" for an accepted connection); expect is the id the dialler
// expects to find there ("" for any).
func (n *Node) handshake(ctx context.Context, c net.Conn, dialled, expect string, logRefusal bool) (string, error) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	r := bufio.NewReader(c)
	hello := encode(&frame{T: "hello", Info: n.selfInfo()})
	var peer *frame
	var err error
	if dialled != "" {
		if err = writeFrame(c, hello); err == nil {
			peer, err = readFrame(r)
		}
	} else {
		if peer, err = readFrame(r); err == nil {
			err = writeFrame(c, hello)
		}
	}
	if err == nil && (peer.T != "hello" || peer.Info == nil || !isUUID(peer.Info.ID)) {
		err = errors.New("bad cluster handshake")
	}
	if err != nil {
		c.Close()
		return "", err
	}
	info := *peer.Info
	if info.ID == n.id {
		c.Close()
		return info.ID, errSelf
	}
	if dialled != "" {
		n.mu.Lock()
		n.addrID[dialled] = info.ID
		if expect != "" && info.ID != expect {
			key := dialled + "|" + info.ID
			if logRefusal && !n.refused[key] {
				n.refused[key] = true
				n.logf("Refusing connection to %s: server %s was expected there, but server %s answered. A server whose data directory was replaced must not take the place of the old one.", dialled, expect, info.ID)
			}
			n.mu.Unlock()
			c.Close()
			return info.ID, errRefused
		}
		n.mu.Unlock()
		// Only now may the acceptor count the connection: a refused one
		// must leave no trace on either side.
		if err := writeFrame(c, encode(&frame{T: "go"})); err != nil {
			c.Close()
			return info.ID, err
		}
	} else {
		f, err := readFrame(r)
		if err != nil || f.T != "go" {
			c.Close()
			return info.ID, errRefused
		}
	}

	pc := &peerConn{
		n: n, c: c, r: r, info: info, out: make(chan []byte, 4096),
		done: make(chan struct{}), pending: map[uint64]chan *rpcResp{},
	}
	if n.id < info.ID {
		// We arbitrate: the first connection to reach this point wins.
		n.mu.Lock()
		if closing := n.closing; closing || n.conns[info.ID] != nil {
			n.mu.Unlock()
			_ = writeFrame(c, encode(&frame{T: "reject"}))
			c.Close()
			if closing {
				return info.ID, errShutdown
			}
			return info.ID, errDup
		}
		n.registerLocked(pc)
		n.mu.Unlock()
		if err := writeFrame(c, encode(&frame{T: "ok"})); err != nil {
			pc.close()
			n.dropConn(pc)
			return info.ID, err
		}
	} else {
		f, err := readFrame(r)
		if err != nil || f.T != "ok" {
			c.Close()
			if err == nil {
				err = errDup
			}
			return info.ID, err
		}
		n.mu.Lock()
		if n.closing {
			n.mu.Unlock()
			c.Close()
			return info.ID, errShutdown
		}
		if old := n.conns[info.ID]; old != nil {
			// The arbiter saw the old connection die before we did.
			n.unregisterLocked(old)
			old.close()
		}
		n.registerLocked(pc)
		n.mu.Unlock()
	}
	_ = c.SetDeadline(time.Time{})
	n.goFunc(pc.writeLoop)
	n.goFunc(func() { n.readLoop(pc) })
	n.mu.Lock()
	pc.send(encode(&frame{T: "meta", Meta: n.meta}))
	n.mu.Unlock()
	n.broadcastState()
	return info.ID, nil
}

// registerLocked makes pc the connection to its peer. Callers hold n.mu.
func (n *Node) registerLocked(pc *peerConn) {
	id := pc.info.ID
	pc.since = time.Now()
	n.conns[id] = pc
	n.connOrder = append(n.connOrder, id)
	for _, a := range pc.info.Canonical {
		n.addrID[a.String()] = id
	}
	if d := n.dialers["peer:"+id]; d != nil {
		d.everConnected = true
		d.until = time.Time{}
	}
	if pc.info.Proxy {
		n.logf("Connected to proxy proxy-%s", id)
	} else {
		n.logf("Connected to server \"%s\" %s", n.serverNameLocked(id, pc.info.Name), id)
	}
	n.changedLocked()
}

// unregisterLocked forgets pc if it is still the connection to its peer and
// reports whether it was. Callers hold n.mu.
func (n *Node) unregisterLocked(pc *peerConn) bool {
	id := pc.info.ID
	if n.conns[id] != pc {
		return false
	}
	delete(n.conns, id)
	for i, x := range n.connOrder {
		if x == id {
			n.connOrder = append(n.connOrder[:i:i], n.connOrder[i+1:]...)
			break
		}
	}
	if pc.info.Proxy {
		n.logf("Disconnected from proxy proxy-%s", id)
	} else {
		n.logf("Disconnected from server \"%s\" %s", n.serverNameLocked(id, pc.info.Name), id)
	}
	n.changedLocked()
	return true
}

func (n *Node) serverNameLocked(id, fallback string) string {
	if s := n.meta.Servers[id]; s != nil {
		return s.Name
	}
	return fallback
}

// dropConn handles a connection that ended: forget it, fail its pending
// requests and keep redialling a lost server until the reconnect timeout.
func (n *Node) dropConn(pc *peerConn) {
	pc.close()
	n.mu.Lock()
	was := n.unregisterLocked(pc)
	if was && !pc.info.Proxy && !n.closing {
		// A proxy never comes back with the same id, so only servers are
		// redialled.
		n.ensurePeerDialerLocked(n.runCtxLocked(), pc.info.ID, canonStrings(pc.info.Canonical), time.Now().Add(n.reconnect))
	}
	n.mu.Unlock()
	pc.pmu.Lock()
	for rid, ch := range pc.pending {
		close(ch)
		delete(pc.pending, rid)
	}
	pc.pmu.Unlock()
	if was {
		n.broadcastState()
	}
}

func canonStrings(h []hostPort) []string {
	var out []string
	for _, a := range h {
		out = append(out, a.String())
	}
	return out
}

func (n *Node) closeAllConns() {
	n.mu.Lock()
	var all []*peerConn
	for _, id := range n.connOrder {
		all = append(all, n.conns[id])
	}
	n.mu.Unlock()
	for _, pc := range all {
		pc.close()
		n.dropConn(pc)
	}
}

func (n *Node) readLoop(pc *peerConn) {
	defer n.dropConn(pc)
	for {
		f, err := readFrame(pc.r)
		if err != nil {
			return
		}
		switch f.T {
		case "meta":
			if f.Meta != nil {
				f.Meta.normalize()
				n.mergeMeta(f.Meta, pc)
			}
		case "state":
			n.handleState(pc, f)
		case "req":
			if f.Req != nil {
				rid := f.RID
				req := f.Req
				n.goFunc(func() {
					resp := n.serveRPC(req)
					pc.send(encode(&frame{T: "resp", RID: rid, Resp: resp}))
				})
			}
		case "resp":
			pc.pmu.Lock()
			ch := pc.pending[f.RID]
			delete(pc.pending, f.RID)
			pc.pmu.Unlock()
			if ch != nil && f.Resp != nil {
				ch <- f.Resp
			}
		case "data":
			n.mu.Lock()
			n.changedLocked()
			n.mu.Unlock()
		}
	}
}

// mergeMeta folds a peer's metadata into ours and passes on what changed.
func (n *Node) mergeMeta(m *Meta, from *peerConn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	changed, behind := n.meta.merge(m)
	if changed {
		n.metaChangedLocked(from)
	}
	if behind && from != nil {
		from.send(encode(&frame{T: "meta", Meta: n.meta}))
	}
}

// metaChangedLocked persists and propagates a metadata change and applies
// its effects on hosted data. skip is the peer the change came from.
func (n *Node) metaChangedLocked(skip *peerConn) {
	n.persistMetaLocked()
	if !n.proxy {
		for id := range n.data {
			t := n.meta.Tables[id]
			if t == nil || t.Deleted || t.Primary != n.id {
				delete(n.data, id)
				if err := removeTable(n.cfg.Directory, id); err != nil {
					n.logf("error: could not remove table %s: %v", id, err)
				}
			}
		}
	}
	b := encode(&frame{T: "meta", Meta: n.meta})
	for _, pc := range n.conns {
		if pc != skip {
			pc.send(b)
		}
	}
	n.changedLocked()
}

// handleState records a peer's ports and connections, and dials the peers
// it knows that we do not.
func (n *Node) handleState(pc *peerConn, f *frame) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if f.Info != nil && f.Info.ID == pc.info.ID {
		pc.info = *f.Info
	}
	pc.peers = f.Peers
	for _, p := range f.Peers {
		if p.ID == n.id || n.conns[p.ID] != nil || len(p.Addrs) == 0 {
			continue
		}
		n.ensurePeerDialerLocked(n.runCtxLocked(), p.ID, p.Addrs, time.Now().Add(n.reconnect))
	}
	n.changedLocked()
}

// broadcastState tells every peer our ports and connected peers.
func (n *Node) broadcastState() {
	n.mu.Lock()
	defer n.mu.Unlock()
	f := &frame{T: "state", Info: n.selfInfoLocked()}
	for _, id := range n.connOrder {
		pc := n.conns[id]
		f.Peers = append(f.Peers, peerAd{ID: id, Proxy: pc.info.Proxy, Addrs: canonStrings(pc.info.Canonical)})
	}
	b := encode(f)
	for _, pc := range n.conns {
		pc.send(b)
	}
}

// dialer keeps one peer (or one --join address) connected.
type dialer struct {
	key           string
	addrs         []string
	expect        string    // id expected at addrs; "" for a --join
	until         time.Time // give up after; zero: never
	join          bool
	everConnected bool
}

// runCtx is the context of Run; dialers started later use it.
func (n *Node) runCtxLocked() context.Context {
	return n.runCtx
}

func (n *Node) startJoinDialer(ctx context.Context, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := "join:" + addr
	if n.dialers[key] != nil {
		return
	}
	d := &dialer{key: key, addrs: []string{addr}, join: true}
	n.dialers[key] = d
	n.goFunc(func() { n.dialLoop(ctx, d) })
}

// ensurePeerDialerLocked makes sure a dialer targets peer id. Callers hold n.mu.
func (n *Node) ensurePeerDialerLocked(ctx context.Context, id string, addrs []string, until time.Time) {
	if ctx == nil || n.closing {
		return
	}
	key := "peer:" + id
	if d := n.dialers[key]; d != nil {
		for _, a := range addrs {
			if !contains(d.addrs, a) {
				d.addrs = append(d.addrs, a)
			}
		}
		sortDialOrder(d.addrs)
		if d.until.IsZero() || until.After(d.until) {
			d.until = until
		}
		return
	}
	d := &dialer{key: key, addrs: append([]string(nil), addrs...), expect: id, until: until}
	sortDialOrder(d.addrs)
	n.dialers[key] = d
	n.goFunc(func() { n.dialLoop(ctx, d) })
}

func (n *Node) dialLoop(ctx context.Context, d *dialer) {
	bo := backoffMin
	for {
		n.mu.Lock()
		id := d.expect
		if id == "" {
			id = n.addrID[d.addrs[0]]
		}
		connected := id != "" && n.conns[id] != nil
		ch := n.changeCh
		if n.closing || (!connected && !d.until.IsZero() && time.Now().After(d.until)) {
			delete(n.dialers, d.key)
			n.changedLocked()
			n.mu.Unlock()
			return
		}
		addrs := append([]string(nil), d.addrs...)
		n.mu.Unlock()
		if connected {
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
			bo = backoffMin
			continue
		}
		err := n.dialOnce(ctx, addrs, d.expect)
		switch {
		case err == nil:
			n.mu.Lock()
			d.everConnected = true
			n.changedLocked()
			n.mu.Unlock()
			bo = backoffMin
			continue
		case errors.Is(err, errSelf):
			n.mu.Lock()
			delete(n.dialers, d.key)
			n.mu.Unlock()
			return
		case errors.Is(err, errDup):
			// The pair is (being) connected the other way; look again soon.
			bo = backoffMin
		}
		t := time.NewTimer(bo)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		bo = min(bo*2, backoffMax)
	}
}

// dialOnce tries addrs in order and runs the handshake on the first that
// answers.
func (n *Node) dialOnce(ctx context.Context, addrs []string, expect string) error {
	var last error = errors.New("no address to dial")
	allLoopback := true
	for _, a := range addrs {
		allLoopback = allLoopback && isLoopbackAddr(a)
	}
	selfOnly := true
	for _, a := range addrs {
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		var d net.Dialer
		c, err := d.DialContext(dctx, "tcp", a)
		cancel()
		if err != nil {
			last, selfOnly = err, false
			continue
		}
		if n.tls != nil {
			c = tls.Client(c, n.tls.client)
		}
		// A peer bound to every address advertises its loopback addresses
		// too; from another host those reach ourselves or a neighbour.
		// Such answers are skipped quietly and the next address is tried.
		_, err = n.handshake(ctx, c, a, expect, allLoopback || !isLoopbackAddr(a))
		switch {
		case errors.Is(err, errSelf):
			last = err
			continue
		case errors.Is(err, errRefused):
			last, selfOnly = err, false
			continue
		}
		return err
	}
	if selfOnly && len(addrs) > 0 {
		return errSelf
	}
	return last
}

// isLoopbackAddr reports whether host:port names a loopback address.
func isLoopbackAddr(a string) bool {
	h, _, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// sortDialOrder puts non-loopback addresses first (stable), so that peers on
// other hosts are reached through an address that leads to them.
func sortDialOrder(addrs []string) {
	slices.SortStableFunc(addrs, func(a, b string) int {
		la, lb := isLoopbackAddr(a), isLoopbackAddr(b)
		switch {
		case la == lb:
			return 0
		case lb:
			return -1
		}
		return 1
	})
}

// rpcReq is a table operation forwarded to the table's primary.
type rpcReq struct {
	Op       string           `json:"op"` // get, scan, insert, cas
	Table    string           `json:"table"`
	Key      any              `json:"key,omitempty"`
	Docs     []map[string]any `json:"docs,omitempty"`
	Conflict string           `json:"conflict,omitempty"`
	Old      any              `json:"old,omitempty"`
	New      any              `json:"new,omitempty"`
}

type rpcResp struct {
	Err     *reql.Error        `json:"err,omitempty"`
	Doc     any                `json:"doc,omitempty"`
	Docs    []any              `json:"docs,omitempty"`
	Summary *reql.WriteSummary `json:"summary,omitempty"`
	OK      bool               `json:"ok,omitempty"`
}

func (n *Node) serveRPC(req *rpcReq) *rpcResp {
	resp := &rpcResp{}
	var err error
	switch req.Op {
	case "get":
		resp.Doc, err = n.localGet(req.Table, req.Key)
	case "scan":
		resp.Docs, err = n.localScan(req.Table)
	case "insert":
		var s reql.WriteSummary
		s, err = n.localInsert(req.Table, req.Docs, req.Conflict)
		resp.Summary = &s
	case "cas":
		resp.OK, err = n.localCAS(req.Table, req.Key, req.Old, req.New)
	default:
		err = fmt.Errorf("unknown cluster request %q", req.Op)
	}
	if err != nil {
		var re *reql.Error
		if !errors.As(err, &re) {
			re = &reql.Error{Kind: reql.RuntimeError, Type: reql.ErrInternal, Msg: err.Error()}
		}
		resp.Err = re
	}
	return resp
}

// call sends req to peer id and waits for the answer.
func (n *Node) call(ctx context.Context, id string, req *rpcReq, what string) (*rpcResp, error) {
	n.mu.Lock()
	pc := n.conns[id]
	n.mu.Unlock()
	lost := reql.OpFailed("Cannot perform %s: lost contact with primary replica", what)
	if pc == nil {
		return nil, lost
	}
	ch := make(chan *rpcResp, 1)
	pc.pmu.Lock()
	pc.nextRID++
	rid := pc.nextRID
	pc.pending[rid] = ch
	pc.pmu.Unlock()
	select {
	case <-pc.done:
		return nil, lost
	default:
	}
	pc.send(encode(&frame{T: "req", RID: rid, Req: req}))
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, lost
		}
		if r.Err != nil {
			return r, r.Err
		}
		return r, nil
	case <-pc.done:
		return nil, lost
	case <-ctx.Done():
		pc.pmu.Lock()
		delete(pc.pending, rid)
		pc.pmu.Unlock()
		return nil, ctx.Err()
	}
}
