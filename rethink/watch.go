package rethink

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// watchedTables are the tables whose changes mean the agent should look again.
var watchedTables = []string{"server_status", "current_issues"}

// errOpen marks a changefeed that could not be opened at all.
var errOpen = errors.New("open changefeed")

// Watch returns a channel that receives a value whenever server_status or
// current_issues may have changed. Notifications are coalesced: the channel
// holds at most one pending value and sending never blocks, so a slow reader
// sees one notification for many changes. The first notification comes from
// the feeds' initial values, so a reader may wait on it before its first View.
//
// Each table is followed by a changefeed (include_initial). When a feed ends
// with an error it is reopened with exponential backoff; when a feed cannot
// be opened at all the channel is notified on every retry instead, which
// amounts to polling every Options.PollInterval (the backoff's cap) until the
// feed opens again. The goroutines end, and the channel is closed, when ctx
// is done.
func (c *Client) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	notify := func() {
		select {
		case ch <- struct{}{}:
		default: // one is pending already
		}
	}
	var wg sync.WaitGroup
	for _, table := range watchedTables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.follow(ctx, table, notify)
		}()
	}
	go func() {
		wg.Wait()
		close(ch)
	}()
	return ch
}

// follow keeps a changefeed on table open until ctx is done.
func (c *Client) follow(ctx context.Context, table string, notify func()) {
	log := c.opts.logger().With("table", table, "address", c.opts.Address)
	b := backoff.NewExponentialBackOff()
	b.MaxInterval = c.opts.pollInterval()
	b.InitialInterval = min(100*time.Millisecond, b.MaxInterval)
	for {
		started := time.Now()
		feed := c.feedFn
		if feed == nil {
			feed = c.feed
		}
		err := feed(ctx, table, notify)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errOpen) {
			// Cannot watch: make the reader poll.
			notify()
			log.Debug("changefeed unavailable, polling", "err", err)
		} else {
			log.Warn("changefeed ended, reopening", "err", err)
			// Something may have changed while the feed was down.
			notify()
			if time.Since(started) > b.MaxInterval {
				b.Reset() // it ran fine for a while: start over quickly
			}
		}
		t := time.NewTimer(b.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// feed runs one changefeed until it fails or ctx is done.
func (c *Client) feed(ctx context.Context, table string, notify func()) error {
	cur, err := sys(table).Changes(r.ChangesOpts{IncludeInitial: true}).Run(c.session, r.RunOpts{Context: ctx})
	if err != nil {
		return errors.Join(errOpen, err)
	}
	// Closing the cursor on ctx's end unblocks Next.
	stop := context.AfterFunc(ctx, func() { _ = cur.Close() })
	defer stop()
	defer cur.Close()
	var change any
	for cur.Next(&change) {
		notify()
	}
	if err := cur.Err(); err != nil {
		return err
	}
	return errors.New("changefeed closed by the server")
}
