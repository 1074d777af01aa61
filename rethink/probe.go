package rethink

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// v1Magic opens the V1_0 handshake (ql2.VersionDummy_V1_0).
const v1Magic = 0x34c2bdc3

// probeHandshake checks, with a deadline, that a RethinkDB server answers
// the first step of the handshake at addr. rethinkdb-go sets no deadline on
// its handshake, so without this a server that accepts connections but never
// answers would hold a dial forever.
func probeHandshake(ctx context.Context, addr string, tlsConfig *tls.Config, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var conn net.Conn
	var err error
	if tlsConfig != nil {
		conn, err = (&tls.Dialer{Config: tlsConfig}).DialContext(dctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	// Closing the connection when ctx ends unblocks the read below.
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	defer stop()
	_ = conn.SetDeadline(deadline)

	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], v1Magic)
	if _, err := conn.Write(magic[:]); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	reply, err := bufio.NewReaderSize(conn, 512).ReadString(0)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("no RethinkDB handshake reply: %w", ctx.Err())
		}
		if dctx.Err() != nil || isTimeout(err) {
			return fmt.Errorf("no RethinkDB handshake reply: %w", context.DeadlineExceeded)
		}
		return fmt.Errorf("handshake: %w", err)
	}
	var hello struct {
		Success bool   `json:"success"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal([]byte(reply[:len(reply)-1]), &hello); err != nil {
		return fmt.Errorf("handshake: not a RethinkDB reply: %q", reply[:min(len(reply)-1, 80)])
	}
	if !hello.Success {
		return fmt.Errorf("handshake refused: %s", hello.Error)
	}
	return nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
