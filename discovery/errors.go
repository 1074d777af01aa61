package discovery

import "sync/atomic"

// ErrorCounter is implemented by providers that count their failures (a
// lookup that failed, a file that did not parse, an API that refused), for
// the rethinkdb_agent_discovery_errors_total metric. It is optional: a
// provider without it reports no errors.
type ErrorCounter interface {
	// Errors returns how many errors the provider has met since it was
	// created. It only grows, and is safe to call from any goroutine.
	Errors() uint64
}

// ErrorCount is a ready-made ErrorCounter for providers to embed: call
// CountError where the provider logs a failure.
type ErrorCount struct{ n atomic.Uint64 }

// CountError adds one error.
func (c *ErrorCount) CountError() { c.n.Add(1) }

// Errors implements ErrorCounter.
func (c *ErrorCount) Errors() uint64 { return c.n.Load() }

// ErrorCounts returns, for every provider of the manager, the errors it has
// counted: 0 for providers that do not implement ErrorCounter. Every
// provider has an entry, so the map also lists the provider names.
func (m *Manager) ErrorCounts() map[string]uint64 {
	out := make(map[string]uint64, len(m.providers))
	for _, p := range m.providers {
		var n uint64
		if ec, ok := p.(ErrorCounter); ok {
			n = ec.Errors()
		}
		out[p.Name()] = n
	}
	return out
}
