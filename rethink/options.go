// Package rethink gives typed access to the RethinkDB system tables the agent
// needs (server_status, server_config, current_issues, db_config,
// table_config), conditional writes that are safe when several agents race,
// and a change notifier built on changefeeds.
package rethink

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Options says how to reach one RethinkDB server's driver port.
type Options struct {
	Address  string // host:port of the driver port
	User     string // defaults to "admin"
	Password string // never logged, never put on a command line
	TLS      *tls.Config
	Timeout  time.Duration // dial timeout and bound for calls without a context; default 10s

	// Logger receives the notifier's reconnect messages. Nil discards them.
	Logger *slog.Logger
	// PollInterval is how often Watch notifies when no changefeed can be
	// opened, and the cap of its reconnect backoff. Default 5s.
	PollInterval time.Duration
}

const redacted = "REDACTED"

// String redacts the password so that Options can be printed safely.
func (o Options) String() string {
	pw := ""
	if o.Password != "" {
		pw = redacted
	}
	return fmt.Sprintf("rethink.Options{Address:%q User:%q Password:%q TLS:%t Timeout:%s}",
		o.Address, o.user(), pw, o.TLS != nil, o.Timeout)
}

// GoString keeps %#v from printing the password too.
func (o Options) GoString() string { return o.String() }

// LogValue implements slog.LogValuer and never includes the password.
func (o Options) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("address", o.Address),
		slog.String("user", o.user()),
		slog.Bool("tls", o.TLS != nil),
		slog.Duration("timeout", o.timeout()),
	}
	if o.Password != "" {
		attrs = append(attrs, slog.String("password", redacted))
	}
	return slog.GroupValue(attrs...)
}

func (o Options) user() string {
	if o.User == "" {
		return "admin"
	}
	return o.User
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return 10 * time.Second
	}
	return o.Timeout
}

func (o Options) pollInterval() time.Duration {
	if o.PollInterval <= 0 {
		return 5 * time.Second
	}
	return o.PollInterval
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// LoadPassword returns the password from file when file is set (the file
// wins), else from the environment variable env, else "". One trailing
// newline ("\n" or "\r\n") is removed, since editors and `echo` add one. The
// error names the file or variable, never the secret.
func LoadPassword(file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read password file %s: %w", file, err)
		}
		s := string(b)
		if strings.HasSuffix(s, "\r\n") {
			s = s[:len(s)-2]
		} else {
			s = strings.TrimSuffix(s, "\n")
		}
		if s == "" {
			return "", fmt.Errorf("password file %s is empty", file)
		}
		return s, nil
	}
	if env != "" {
		return os.Getenv(env), nil
	}
	return "", nil
}
