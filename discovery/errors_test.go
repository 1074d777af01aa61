package discovery

import (
	"context"
	"sync"
	"testing"
)

// countingProvider is a provider that counts errors.
type countingProvider struct {
	ErrorCount
	name string
}

func (p *countingProvider) Name() string                              { return p.name }
func (p *countingProvider) Run(ctx context.Context, _ chan<- []Group) { <-ctx.Done() }

// quietProvider does not implement ErrorCounter.
type quietProvider struct{ name string }

func (p quietProvider) Name() string                              { return p.name }
func (p quietProvider) Run(ctx context.Context, _ chan<- []Group) { <-ctx.Done() }

func TestErrorCounts(t *testing.T) {
	dns := &countingProvider{name: "dns"}
	m := NewManager(nil, dns, quietProvider{name: "static"})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(dns.CountError) // from any goroutine
	}
	wg.Wait()
	got := m.ErrorCounts()
	if len(got) != 2 || got["dns"] != 10 || got["static"] != 0 {
		t.Errorf("ErrorCounts() = %v, want dns=10 static=0", got)
	}
	var _ ErrorCounter = dns
}
