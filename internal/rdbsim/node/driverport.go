package node

import (
	"context"

	"github.com/rethinkdb-agent/rethinkdb-agent/internal/rdbsim/driver"
)

// serveDriver serves the driver protocol on ln until ctx ends; the returned
// channel is closed once every client connection is closed.
func (n *Node) serveDriver(ctx context.Context, ln *multiListener) <-chan struct{} {
	done := make(chan struct{})
	n.goFunc(func() {
		defer close(done)
		err := driver.Serve(ctx, ln, driver.Config{Backend: n.Backend(), Password: n.AdminPassword})
		if err != nil && ctx.Err() == nil {
			n.logf("error: driver port: %v", err)
		}
	})
	return done
}
