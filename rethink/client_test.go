package rethink

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// A refused dial is an error naming the address and leaks nothing (goleak
// in TestMain checks the driver's host pool goroutine).
func TestDialRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for range 3 {
		_, err := Dial(context.Background(), Options{Address: addr, Password: "pw-secret", Timeout: time.Second})
		if err == nil || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "pw-secret") {
			t.Fatalf("err = %v", err)
		}
	}
}

// A server that accepts but never answers: ctx ends the dial.
func TestDialContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = Dial(ctx, Options{Address: l.Addr().String(), Timeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err = %v", err)
	}
	// Without a ctx deadline, Options.Timeout bounds the handshake.
	_, err = Dial(context.Background(), Options{Address: l.Addr().String(), Timeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no RethinkDB handshake reply") {
		t.Fatalf("err = %v", err)
	}
}

// Something that is not RethinkDB answers.
func TestDialNotRethinkDB(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n\x00"))
		c.Close()
	}()
	_, err = Dial(context.Background(), Options{Address: l.Addr().String(), Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "not a RethinkDB reply") {
		t.Fatalf("err = %v", err)
	}
}

func TestDialEmptyAddress(t *testing.T) {
	if _, err := Dial(context.Background(), Options{}); err == nil {
		t.Fatal("no error")
	}
}

func TestProxyKey(t *testing.T) {
	tests := []struct{ id, want string }{
		// A real 2.4.4 proxy's SERVER_INFO id (transcripts: "Proxy ready, proxy-66d2…").
		{"proxy-66d2e99c-0015-408e-8b4c-df0eef81f64e", "proxy-66d2e99c-0015-408e-8b4c-df0eef81f64e"},
		{"66d2e99c-0015-408e-8b4c-df0eef81f64e", "proxy-66d2e99c-0015-408e-8b4c-df0eef81f64e"},
	}
	for _, tc := range tests {
		if got := proxyKey(tc.id); got != tc.want {
			t.Errorf("proxyKey(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}
