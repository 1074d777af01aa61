package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// On-disk layout of a server's data directory:
//
//	<dir>/metadata.json      identity and cluster metadata (diskState)
//	<dir>/tables/<id>.json   documents of a table this server hosts
//
// Every file is written to a temporary name and renamed, so a crash leaves
// either the old or the new version. Peer addresses are deliberately not
// stored: like the real server, a restarted node only knows its --join list.
const (
	metaFile  = "metadata.json"
	tablesDir = "tables"
)

type diskState struct {
	Format   int    `json:"format"`
	ServerID string `json:"server_id"`
	Meta     *Meta  `json:"meta"`
}

type diskTable struct {
	Docs []any `json:"docs"`
}

// loadState reads dir's metadata; exists is false for a new directory.
func loadState(dir string) (st *diskState, exists bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	st = &diskState{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, true, fmt.Errorf("data directory %s: corrupt %s: %w", dir, metaFile, err)
	}
	if st.ServerID == "" || st.Meta == nil {
		return nil, true, fmt.Errorf("data directory %s: %s has no server id", dir, metaFile)
	}
	st.Meta.normalize()
	return st, true, nil
}

func saveState(dir string, st *diskState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, metaFile), b)
}

func loadTable(dir, id string) ([]any, error) {
	b, err := os.ReadFile(filepath.Join(dir, tablesDir, id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var t diskTable
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("table file %s: %w", id, err)
	}
	return t.Docs, nil
}

func saveTable(dir, id string, docs []any) error {
	b, err := json.Marshal(diskTable{Docs: docs})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, tablesDir), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, tablesDir, id+".json"), b)
}

func removeTable(dir, id string) error {
	err := os.Remove(filepath.Join(dir, tablesDir, id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
