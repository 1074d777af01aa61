// Package driver serves the RethinkDB client driver protocol (V1_0 with
// SCRAM-SHA-256, JSON queries) in front of a reql.Backend, as far as
// gopkg.in/rethinkdb/rethinkdb-go.v6 uses it.
package driver

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/reql"
)

// ServerVersion is what the handshake reports.
const ServerVersion = "2.4.4"

// Protocol magic numbers (ql2 VersionDummy).
const (
	magicV0_4 = 0x400c2d20
	magicV1_0 = 0x34c2bdc3
	protoJSON = 0x7e6970c7
)

// Query and response types (ql2).
const (
	queryStart       = 1
	queryContinue    = 2
	queryStop        = 3
	queryNoreplyWait = 4
	queryServerInfo  = 5

	successAtom     = 1
	successSequence = 2
	successPartial  = 3
	waitComplete    = 4
	serverInfo      = 5

	noteSequenceFeed = 1
	noteAtomFeed     = 2
)

// maxQuerySize bounds one query frame; larger ones end the connection.
const maxQuerySize = 64 << 20

const unsupportedMagic = "ERROR: Received an unsupported protocol version. This port is for RethinkDB queries. Does your client driver version not match the server?\n"

// Config configures a driver server.
type Config struct {
	// Backend answers the queries.
	Backend reql.Backend
	// Password returns the current password of user admin; nil or "" means
	// no password. Any other user is refused with "Unknown user".
	Password func() string
	// BatchSize caps the documents per response of a sequence (default 1000).
	BatchSize int
	// Logger receives diagnostics that are not part of the server's
	// user-visible log; nil discards them.
	Logger *slog.Logger
}

// Server is a driver-port server.
type Server struct {
	cfg    Config
	saltMu sync.Mutex
	salts  map[string]saltEntry
}

// NewServer checks cfg and returns a server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("driver: Config.Backend is nil")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Server{cfg: cfg, salts: map[string]saltEntry{}}, nil
}

// Serve is NewServer(cfg).Serve(ctx, ln).
func Serve(ctx context.Context, ln net.Listener, cfg Config) error {
	s, err := NewServer(cfg)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve accepts connections on ln until ctx ends, then closes ln and every
// connection, waits for their goroutines, and returns nil. It returns the
// error of ln.Accept if the listener fails first.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			cancel()
			return fmt.Errorf("driver: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, c)
		}()
	}
}

// handle runs one client connection: handshake, then the query loop.
func (s *Server) handle(ctx context.Context, c net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()

	r := bufio.NewReader(c)
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return
	}
	switch binary.LittleEndian.Uint32(magic[:]) {
	case magicV1_0:
		if err := s.handshakeV1(r, c); err != nil {
			s.cfg.Logger.Debug("driver handshake failed", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
	case magicV0_4:
		if err := s.handshakeV0_4(r, c); err != nil {
			return
		}
	default:
		_, _ = c.Write(append([]byte(unsupportedMagic), 0))
		return
	}
	cn := &conn{s: s, c: c, ctx: ctx, cancel: cancel, queries: map[int64]*query{}}
	cn.serve(r)
}

// handshakeV0_4 is the legacy handshake: the auth key is admin's password.
func (s *Server) handshakeV0_4(r *bufio.Reader, w io.Writer) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.LittleEndian.Uint32(n[:])
	if size > 2048 {
		_, _ = w.Write(append([]byte("ERROR: Client provided an authorization key that is too long.\n"), 0))
		return errors.New("auth key too long")
	}
	key := make([]byte, size)
	if _, err := io.ReadFull(r, key); err != nil {
		return err
	}
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	if proto := binary.LittleEndian.Uint32(n[:]); proto != protoJSON {
		msg := fmt.Sprintf("ERROR: Unrecognized protocol specified: '%d'\n", int32(proto))
		_, _ = w.Write(append([]byte(msg), 0))
		return errors.New("bad protocol")
	}
	password := ""
	if s.cfg.Password != nil {
		password = s.cfg.Password()
	}
	if string(key) != password {
		_, _ = w.Write(append([]byte("ERROR: Incorrect authorization key.\n"), 0))
		return errors.New("wrong auth key")
	}
	_, err := w.Write(append([]byte("SUCCESS"), 0))
	return err
}

// conn is one authenticated connection. Queries run concurrently, each in
// its own goroutine; writes to the socket are serialized.
type conn struct {
	s      *Server
	c      net.Conn
	ctx    context.Context
	cancel context.CancelFunc // ends every query of the connection

	wmu sync.Mutex // serializes responses

	mu      sync.Mutex
	queries map[int64]*query // open streams by token
	wg      sync.WaitGroup   // every query goroutine
	noreply inflight         // noreply queries, for NOREPLY_WAIT
}

// inflight counts running queries; unlike a WaitGroup it may be waited on
// while new ones start.
type inflight struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0
}

func (f *inflight) add() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.zero = make(chan struct{})
	}
	f.n++
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 {
		close(f.zero)
	}
}

// wait returns once the queries running now have finished, or ctx ends.
func (f *inflight) wait(ctx context.Context) {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return
	}
	zero := f.zero
	f.mu.Unlock()
	select {
	case <-zero:
	case <-ctx.Done():
	}
}

// query is an open stream: a sequence with more batches, or a changefeed.
type query struct {
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex // serializes CONTINUEs
	stream  reql.Stream
	notes   []int
	pending []any
	ended   bool        // the stream has no more batches
	stopped atomic.Bool // set by STOP before it cancels ctx
}

type response struct {
	T int   `json:"t"`
	E int   `json:"e,omitempty"`
	R []any `json:"r"`
	N []int `json:"n,omitempty"`
	B []any `json:"b,omitempty"`
}

func (cn *conn) serve(r *bufio.Reader) {
	defer func() {
		// The reader is done: stop every query, wait for their goroutines,
		// then close the streams nobody uses any more.
		cn.cancel()
		cn.c.Close()
		cn.wg.Wait()
		for _, q := range cn.queries {
			q.stream.Close()
		}
	}()
	var hdr [12]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		token := int64(binary.LittleEndian.Uint64(hdr[:8]))
		size := binary.LittleEndian.Uint32(hdr[8:])
		if size > maxQuerySize {
			cn.send(token, clientError(fmt.Sprintf("Query size (%d) greater than maximum (%d).", size, maxQuerySize)))
			return
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		cn.dispatch(token, body)
	}
}

func clientError(msg string) response {
	return response{T: int(reql.ClientError), R: []any{msg}, B: []any{}}
}

func errorResponse(err error) response {
	var re *reql.Error
	if !errors.As(err, &re) {
		re = &reql.Error{Kind: reql.RuntimeError, Type: reql.ErrInternal, Msg: err.Error()}
	}
	resp := response{T: int(re.Kind), R: []any{re.Msg}, B: []any{}}
	if re.Kind == reql.RuntimeError {
		resp.E = int(re.Type)
	}
	return resp
}

func (cn *conn) dispatch(token int64, body []byte) {
	var msg []json.RawMessage
	if err := json.Unmarshal(body, &msg); err != nil || len(msg) == 0 {
		cn.send(token, clientError("Client is buggy (failed to deserialize query)."))
		return
	}
	var qtype int
	if err := json.Unmarshal(msg[0], &qtype); err != nil {
		cn.send(token, clientError("Client is buggy (failed to deserialize query)."))
		return
	}
	var opts map[string]any
	if len(msg) > 2 {
		if err := json.Unmarshal(msg[2], &opts); err != nil {
			cn.send(token, clientError("Client is buggy (failed to deserialize query optargs)."))
			return
		}
	}
	noreply := opts["noreply"] == true
	switch qtype {
	case queryStart:
		if len(msg) < 2 {
			cn.send(token, clientError("Client is buggy (START query without a term)."))
			return
		}
		var term any
		if err := json.Unmarshal(msg[1], &term); err != nil {
			cn.send(token, clientError("Client is buggy (failed to deserialize term)."))
			return
		}
		cn.start(token, term, opts, noreply)
	case queryContinue:
		cn.continueQuery(token)
	case queryStop:
		cn.stop(token, noreply)
	case queryNoreplyWait:
		cn.wg.Add(1)
		go func() {
			defer cn.wg.Done()
			cn.noreply.wait(cn.ctx)
			cn.send(token, response{T: waitComplete, R: []any{}})
		}()
	case queryServerInfo:
		cn.wg.Add(1)
		go func() {
			defer cn.wg.Done()
			info, err := cn.s.cfg.Backend.ServerInfo(cn.ctx)
			if err != nil {
				cn.send(token, errorResponse(err))
				return
			}
			cn.send(token, response{T: serverInfo, R: []any{info}})
		}()
	default:
		cn.send(token, clientError(fmt.Sprintf("Unrecognized QueryType: %d.", qtype)))
	}
}

func (cn *conn) start(token int64, term any, opts map[string]any, noreply bool) {
	cn.wg.Add(1)
	if noreply {
		cn.noreply.add()
	}
	go func() {
		defer cn.wg.Done()
		if noreply {
			defer cn.noreply.done()
		}
		qctx, cancel := context.WithCancel(cn.ctx)
		res, err := reql.Run(qctx, cn.s.cfg.Backend, term, opts)
		if err != nil {
			cancel()
			if !noreply {
				cn.send(token, errorResponse(err))
			}
			return
		}
		if res.Stream == nil {
			cancel()
			if !noreply {
				cn.send(token, response{T: successAtom, R: []any{res.Atom}})
			}
			return
		}
		if noreply {
			cancel()
			res.Stream.Close()
			return
		}
		q := &query{ctx: qctx, cancel: cancel, stream: res.Stream}
		switch {
		case res.AtomFeed:
			q.notes = []int{noteAtomFeed}
		case res.Stream.Feed():
			q.notes = []int{noteSequenceFeed}
		}
		cn.mu.Lock()
		if _, dup := cn.queries[token]; dup {
			cn.mu.Unlock()
			cancel()
			res.Stream.Close()
			cn.send(token, clientError(fmt.Sprintf("Token %d is already in use.", token)))
			return
		}
		cn.queries[token] = q
		q.mu.Lock()
		cn.mu.Unlock()
		if q.notes != nil {
			// Like the real server, answer a changefeed at once with an
			// empty batch; changes (and initial values) come on CONTINUE.
			q.mu.Unlock()
			cn.send(token, response{T: successPartial, R: []any{}, N: q.notes})
			return
		}
		cn.nextBatch(token, q)
	}()
}

// nextBatch sends the next batch of q; q.mu is held and released here.
func (cn *conn) nextBatch(token int64, q *query) {
	defer q.mu.Unlock()
	for len(q.pending) == 0 && !q.ended && !q.stopped.Load() {
		batch, more, err := q.stream.Next(q.ctx)
		if err != nil {
			if q.stopped.Load() {
				break
			}
			if cn.ctx.Err() != nil {
				return // the connection is going away
			}
			cn.finish(token, q)
			cn.send(token, errorResponse(reql.AsError(err)))
			return
		}
		q.pending = append(q.pending, batch...)
		q.ended = !more
	}
	if q.stopped.Load() {
		// STOP arrived while this CONTINUE waited: end it empty.
		cn.send(token, response{T: successSequence, R: []any{}})
		return
	}
	n := min(len(q.pending), cn.s.cfg.BatchSize)
	items := q.pending[:n:n]
	q.pending = q.pending[n:]
	if len(q.pending) == 0 && q.ended {
		cn.finish(token, q)
		cn.send(token, response{T: successSequence, R: nonNil(items)})
		return
	}
	cn.send(token, response{T: successPartial, R: nonNil(items), N: q.notes})
}

func nonNil(items []any) []any {
	if items == nil {
		return []any{}
	}
	return items
}

// finish forgets q and closes its stream.
func (cn *conn) finish(token int64, q *query) {
	cn.mu.Lock()
	if cn.queries[token] == q {
		delete(cn.queries, token)
	}
	cn.mu.Unlock()
	q.cancel()
	q.stream.Close()
}

func (cn *conn) continueQuery(token int64) {
	cn.mu.Lock()
	q, ok := cn.queries[token]
	cn.mu.Unlock()
	if !ok {
		cn.send(token, clientError(fmt.Sprintf("Token %d not in stream cache.", token)))
		return
	}
	cn.wg.Add(1)
	go func() {
		defer cn.wg.Done()
		q.mu.Lock()
		if q.stopped.Load() {
			q.mu.Unlock()
			cn.send(token, response{T: successSequence, R: []any{}})
			return
		}
		cn.nextBatch(token, q)
	}()
}

func (cn *conn) stop(token int64, noreply bool) {
	cn.mu.Lock()
	q, ok := cn.queries[token]
	if ok {
		delete(cn.queries, token)
	}
	cn.mu.Unlock()
	if ok {
		q.stopped.Store(true)
		q.cancel()
	}
	cn.wg.Add(1)
	go func() {
		defer cn.wg.Done()
		if ok {
			// Wait for a CONTINUE in flight before closing the stream.
			q.mu.Lock()
			q.stream.Close()
			q.mu.Unlock()
		}
		if !noreply {
			cn.send(token, response{T: successSequence, R: []any{}})
		}
	}()
}

// send writes one response frame.
func (cn *conn) send(token int64, resp response) {
	body, err := json.Marshal(resp)
	if err != nil {
		body, _ = json.Marshal(errorResponse(fmt.Errorf("rethinkdb-sim: cannot encode response: %v", err)))
	}
	frame := make([]byte, 12+len(body))
	binary.LittleEndian.PutUint64(frame, uint64(token))
	binary.LittleEndian.PutUint32(frame[8:], uint32(len(body)))
	copy(frame[12:], body)
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if _, err := cn.c.Write(frame); err != nil {
		cn.s.cfg.Logger.Debug("driver write failed", "err", err)
	}
}
