package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Working directories: rethinkdb proxy writes rethinkdb_data/ (or log_file)
// into its working directory, so each proxy gets a fresh temporary one. If
// the agent is killed hard the directory stays behind; in a container /tmp
// survives restarts, so crash loops would pile them up. Each directory
// therefore holds a .lock file that its agent keeps flock'ed while the proxy
// lives (the kernel drops the lock when the agent dies), and Start removes
// directories whose lock is free.

const (
	dirPrefix = "rethinkdb-proxy-"
	lockName  = ".lock"
	// staleAge keeps the sweep away from a directory whose creator has not
	// locked it yet.
	staleAge = time.Minute
)

// makeWorkDir creates a locked temporary directory. release unlocks it and
// removes it.
func makeWorkDir() (dir string, release func() error, err error) {
	dir, err = os.MkdirTemp("", dirPrefix)
	if err != nil {
		return "", nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return dir, func() error {
		rerr := os.RemoveAll(dir)
		f.Close() // drops the lock
		return rerr
	}, nil
}

// sweepStaleWorkDirs removes proxy directories left by agents that died.
func sweepStaleWorkDirs(log *slog.Logger) {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range matches {
		if !strings.HasPrefix(filepath.Base(dir), dirPrefix) {
			continue
		}
		lock := filepath.Join(dir, lockName)
		st, err := os.Stat(lock)
		if err != nil || time.Since(st.ModTime()) < staleAge {
			continue // not ours, or too young to judge
		}
		f, err := os.OpenFile(lock, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) || err != nil {
			f.Close() // a live proxy's directory
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("removing a stale proxy working directory", "dir", dir, "err", err)
		} else {
			log.Info("removed a stale proxy working directory", "dir", dir)
		}
		f.Close()
	}
}
