package rethink

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestWatchCoalescesAndPolls(t *testing.T) {
	var openFailures atomic.Int32
	burst := make(chan struct{})
	c := &Client{
		opts: Options{Address: "test", PollInterval: 20 * time.Millisecond},
		feedFn: func(ctx context.Context, table string, notify func()) error {
			if table == "server_status" {
				// This feed cannot be opened: the watcher must poll.
				openFailures.Add(1)
				return errors.Join(errOpen, errors.New("refused"))
			}
			// current_issues: a burst of changes, then quiet.
			for range 100 {
				notify()
			}
			close(burst)
			<-ctx.Done()
			return ctx.Err()
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.Watch(ctx)

	<-burst
	// However many notifications, at most one is pending... and polling
	// keeps producing more, so read several.
	for i := range 5 {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("notification %d missing", i)
		}
	}
	if n := openFailures.Load(); n < 3 {
		t.Errorf("feed opened %d times, want retries", n)
	}
	if cap(ch) != 1 {
		t.Errorf("channel capacity %d, want 1 (coalescing)", cap(ch))
	}
	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed after ctx end")
		}
	}
}

// A feed that ends with an error is reopened, and a change is signalled
// (something may have changed while it was down).
func TestWatchReopens(t *testing.T) {
	var mu sync.Mutex
	opens := map[string]int{}
	reopened := make(chan struct{})
	c := &Client{
		opts: Options{Address: "test", PollInterval: 50 * time.Millisecond},
		feedFn: func(ctx context.Context, table string, notify func()) error {
			mu.Lock()
			opens[table]++
			n := opens[table]
			mu.Unlock()
			if table == "current_issues" && n == 3 {
				close(reopened)
			}
			if table == "current_issues" && n < 3 {
				return errors.New("connection reset")
			}
			<-ctx.Done()
			return ctx.Err()
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := c.Watch(ctx)
	select {
	case <-reopened:
	case <-time.After(5 * time.Second):
		t.Fatal("feed not reopened")
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification after the feed broke")
	}
	cancel()
	for range ch {
	}
}
