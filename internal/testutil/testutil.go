// Package testutil holds the small helpers that tests of several packages
// need: a log sink that is safe for concurrent writes and can be waited on,
// and polling of a condition with a deadline. It is for tests only.
package testutil

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// SyncBuffer collects output (a slog handler's, say) from several
// goroutines. The zero value is ready to use.
type SyncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and cleared at the next write; nil when nobody waits
}

// Write appends p and wakes up WaitLine.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// snapshot returns the output so far and a channel closed at the next write.
func (b *SyncBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.buf.String(), b.changed
}

// WaitLine waits until one line holds every one of subs and returns that
// line. At the timeout it fails t, quoting subs and the whole output.
func (b *SyncBuffer) WaitLine(t testing.TB, timeout time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		out, changed := b.snapshot()
		if line, ok := lineWithAll(out, subs); ok {
			return line
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no log line with %q within %v:\n%s", subs, timeout, out)
			return ""
		}
	}
}

// lineWithAll returns the first line of out that holds every one of subs.
func lineWithAll(out string, subs []string) (string, bool) {
	for line := range strings.Lines(out) {
		line = strings.TrimSuffix(line, "\n")
		all := true
		for _, s := range subs {
			if !strings.Contains(line, s) {
				all = false
				break
			}
		}
		if all {
			return line, true
		}
	}
	return "", false
}

// PollInterval is how often Eventually asks its condition again.
const PollInterval = 10 * time.Millisecond

// Eventually polls cond until it reports true. If it does not within
// timeout, t fails with the message of cond's last call, which should say
// what was awaited and what was seen instead.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	EventuallyEvery(t, timeout, PollInterval, cond)
}

// EventuallyEvery is Eventually asking every interval, for conditions that
// cost more to ask (a query to a server, say).
func EventuallyEvery(t testing.TB, timeout, interval time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, msg)
			return
		}
		<-tick.C
	}
}
