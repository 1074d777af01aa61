package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/rethinkdb-agent/rethinkdb-agent/agent"
)

// httpConfig is the status listener's part of the command line.
type httpConfig struct {
	addr string
}

func (h *httpConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&h.addr, "http", "", "`ADDR` to serve /healthz and /status on (off when empty)")
}

// serveHTTP serves /healthz and /status until ctx ends.
func serveHTTP(ctx context.Context, hc httpConfig, a *agent.Agent, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Status())
	})
	ln, err := net.Listen("tcp", hc.addr)
	if err != nil {
		return fmt.Errorf("--http %s: %w", hc.addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving status", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
