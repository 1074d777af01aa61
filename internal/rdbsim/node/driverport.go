package node

import (
	"context"
)

// serveDriver serves the driver protocol on ln until ctx ends.
func (n *Node) serveDriver(ctx context.Context, ln *multiListener) {
	// Until the driver package lands, connections are accepted and closed.
	n.goFunc(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	n.goFunc(func() {
		<-ctx.Done()
		ln.Close()
	})
}
