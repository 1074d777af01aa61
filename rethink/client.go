package rethink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// Client is a connection to one RethinkDB server's driver port.
type Client struct {
	opts    Options
	session *r.Session

	closeOnce sync.Once
	closeErr  error

	// feedFn runs one changefeed; tests replace it. Nil means c.feed.
	feedFn func(ctx context.Context, table string, notify func()) error
}

// ErrProxy is returned by Self and View when the address is a proxy's
// driver port: a proxy is not a server and has no row in server_status.
var ErrProxy = errors.New("connected to a rethinkdb proxy, not a server")

// Dial connects to opts.Address. Authentication errors from the driver
// (rethinkdb.RQLAuthError: "Wrong password", "Unknown user") are returned
// wrapped.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if opts.Address == "" {
		return nil, errors.New("rethink: empty address")
	}
	type result struct {
		s   *r.Session
		err error
	}
	if err := probeHandshake(ctx, opts.Address, opts.TLS, opts.timeout()); err != nil {
		return nil, fmt.Errorf("connect to rethinkdb at %s: %w", opts.Address, err)
	}
	// r.Connect has no context; run it aside so ctx can still abandon it.
	// The probe above makes a hung handshake unlikely, but the driver sets
	// no deadline on its own, so the goroutine may outlive an abandoned
	// dial until the connection breaks.
	copts := r.ConnectOpts{
		Address:  opts.Address,
		Username: opts.user(),
		Password: opts.Password,
		// The driver uses these only for calls without a context,
		// such as Session.Server().
		Timeout:      opts.timeout(),
		ReadTimeout:  opts.timeout(),
		WriteTimeout: opts.timeout(),
		TLSConfig:    opts.TLS,
		// Connections are multiplexed, but a few let two changefeeds
		// and a View read run side by side without queueing.
		InitialCap: 1,
		MaxOpen:    4,
	}
	ch := make(chan result, 1)
	go func() {
		// rethinkdb-go v6.2.1 leaks a goroutine (its host pool's decay
		// loop) on every failed r.Connect, and the agent redials nodes
		// that are down. So first try one plain connection, which fails
		// the same way (refused, auth) without leaking, and only then
		// build the session.
		probe, err := r.NewConnection(opts.Address, &copts)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		_ = probe.Close()
		s, err := r.Connect(copts)
		ch <- result{s, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			return nil, fmt.Errorf("connect to rethinkdb at %s as %s: %w", opts.Address, opts.user(), res.err)
		}
		return &Client{opts: opts, session: res.s}, nil
	case <-ctx.Done():
		go func() {
			if res := <-ch; res.s != nil {
				_ = res.s.Close()
			}
		}()
		return nil, fmt.Errorf("connect to rethinkdb at %s: %w", opts.Address, ctx.Err())
	}
}

// Address returns the address the client was dialled with.
func (c *Client) Address() string { return c.opts.Address }

// Close closes the connections. It is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.session.Close() })
	return c.closeErr
}

func sys(table string) r.Term { return r.DB("rethinkdb").Table(table) }

func sysUUID(table string) r.Term {
	return r.DB("rethinkdb").Table(table, r.TableOpts{IdentifierFormat: "uuid"})
}

// readAll runs q and returns its rows as maps. A row that is not an object
// is an error naming the table.
func (c *Client) readAll(ctx context.Context, table string, q r.Term) ([]map[string]any, error) {
	cur, err := q.Run(c.session, r.RunOpts{Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("read rethinkdb.%s: %w", table, err)
	}
	defer cur.Close()
	var raw []any
	if err := cur.All(&raw); err != nil {
		return nil, fmt.Errorf("read rethinkdb.%s: %w", table, err)
	}
	rows := make([]map[string]any, 0, len(raw))
	for i, v := range raw {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("read rethinkdb.%s: row #%d is %T, want object", table, i, v)
		}
		rows = append(rows, m)
	}
	return rows, nil
}

// serverID asks the driver which server this connection talks to.
func (c *Client) serverID(ctx context.Context) (string, error) {
	type result struct {
		resp r.ServerResponse
		err  error
	}
	// Session.Server has no context; it is bounded by Options.Timeout.
	ch := make(chan result, 1)
	go func() {
		resp, err := c.session.Server()
		ch <- result{resp, err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if res.err != nil {
		return "", fmt.Errorf("server info from %s: %w", c.opts.Address, res.err)
	}
	if res.resp.ID == "" {
		return "", fmt.Errorf("server info from %s: empty id", c.opts.Address)
	}
	// A proxy answers {id, proxy: true} without a name (the driver's
	// ServerResponse has no proxy field). Server names are [A-Za-z0-9_]
	// only, so a "proxy-" name cannot be a server's either.
	if res.resp.Name == "" || strings.HasPrefix(res.resp.Name, "proxy-") {
		return "", fmt.Errorf("%s (%s): %w", c.opts.Address, proxyKey(res.resp.ID), ErrProxy)
	}
	return res.resp.ID, nil
}

// Self returns the server this connection talks to.
func (c *Client) Self(ctx context.Context) (Server, error) {
	id, err := c.serverID(ctx)
	if err != nil {
		return Server{}, err
	}
	status, err := c.readAll(ctx, "server_status", sys("server_status").GetAll(id))
	if err != nil {
		return Server{}, err
	}
	config, err := c.readAll(ctx, "server_config", sys("server_config").GetAll(id))
	if err != nil {
		return Server{}, err
	}
	servers, err := DecodeServers(status, config)
	if err != nil {
		return Server{}, err
	}
	if len(servers) == 0 {
		return Server{}, c.notInStatus(ctx, id)
	}
	if len(servers) != 1 {
		return Server{}, fmt.Errorf("rethinkdb.server_status at %s has %d rows for the connected server %s", c.opts.Address, len(servers), id)
	}
	return servers[0], nil
}

// View reads server_status, server_config, current_issues, db_config and
// table_config one after the other. The tables are not read atomically (the
// server offers no way to); the caller re-reads on the next change.
func (c *Client) View(ctx context.Context) (View, error) {
	id, err := c.serverID(ctx)
	if err != nil {
		return View{}, err
	}
	var rows Rows
	reads := []struct {
		table string
		q     r.Term
		dst   *[]map[string]any
	}{
		{"server_status", sys("server_status"), &rows.ServerStatus},
		{"server_config", sys("server_config"), &rows.ServerConfig},
		{"current_issues", sys("current_issues"), &rows.CurrentIssues},
		{"db_config", sys("db_config"), &rows.DBConfig},
		{"table_config", sysUUID("table_config"), &rows.TableConfig},
	}
	for _, rd := range reads {
		if *rd.dst, err = c.readAll(ctx, rd.table, rd.q); err != nil {
			return View{}, err
		}
	}
	v, err := BuildView(id, rows)
	if err != nil && errors.Is(err, errSelfMissing) {
		if servers, derr := DecodeServers(rows.ServerStatus, nil); derr == nil && slices.Contains(proxies(servers), proxyKey(id)) {
			return View{}, fmt.Errorf("%s (%s): %w", c.opts.Address, proxyKey(id), ErrProxy)
		}
	}
	return v, err
}

// notInStatus explains why the connected server has no server_status row:
// it is a proxy that the servers list as connected, or something odd.
func (c *Client) notInStatus(ctx context.Context, id string) error {
	rows, err := c.readAll(ctx, "server_status", sys("server_status"))
	if err == nil {
		if servers, err := DecodeServers(rows, nil); err == nil && slices.Contains(proxies(servers), proxyKey(id)) {
			return fmt.Errorf("%s (%s): %w", c.opts.Address, proxyKey(id), ErrProxy)
		}
	}
	return fmt.Errorf("rethinkdb.server_status at %s has no row for the connected server %s: %w", c.opts.Address, id, errSelfMissing)
}

// proxyKey is the "proxy-<uuid>" key a proxy has in connected_to. A real
// 2.4.4 proxy already answers SERVER_INFO with that form as its id
// (server_id_t::print in src/rpc/connectivity/server_id.cc); a bare uuid
// gets the prefix.
func proxyKey(id string) string {
	if strings.HasPrefix(id, "proxy-") {
		return id
	}
	return "proxy-" + id
}
