package rethink

import (
	"context"
	"errors"
	"fmt"

	r "gopkg.in/rethinkdb/rethinkdb-go.v6"
)

// The writes below are conditional: each changes a row only when the field
// still holds the value the caller saw (compare-and-set inside one update
// function), so a write based on a stale view does nothing and reports
// changed=false.
//
// This is not a lock. For system tables RethinkDB reads the row, runs the
// function and writes the row as separate steps that other queries can
// interleave with, and writes made on different servers are merged
// last-writer-wins. Two agents racing on the same view can therefore both
// see changed=true. The agent must make racing agents agree: derive target
// names deterministically (e.g. name_<first uuid block>, as the seed post
// does) so that both write the same value.

// writeResult is the part of a write response we look at.
type writeResult struct {
	Errors     int    `rethinkdb:"errors"`
	Replaced   int    `rethinkdb:"replaced"`
	Unchanged  int    `rethinkdb:"unchanged"`
	Skipped    int    `rethinkdb:"skipped"`
	Deleted    int    `rethinkdb:"deleted"`
	FirstError string `rethinkdb:"first_error"`
}

// runWrite runs q and turns first_error into an error naming what.
func (c *Client) runWrite(ctx context.Context, what string, q r.Term) (writeResult, error) {
	cur, err := q.Run(c.session, r.RunOpts{Context: ctx})
	if err != nil {
		return writeResult{}, fmt.Errorf("%s: %w", what, err)
	}
	defer cur.Close()
	var res writeResult
	if err := cur.One(&res); err != nil {
		return writeResult{}, fmt.Errorf("%s: reading the write result: %w", what, err)
	}
	if res.Errors > 0 || res.FirstError != "" {
		msg := res.FirstError
		if msg == "" {
			msg = fmt.Sprintf("%d errors", res.Errors)
		}
		return res, fmt.Errorf("%s: %w", what, errors.New(msg))
	}
	return res, nil
}

// casField sets field to `to` on row id of a system table only if it is `from`.
func (c *Client) casField(ctx context.Context, what string, table r.Term, id, field, from, to string) (bool, error) {
	if id == "" {
		return false, fmt.Errorf("%s: empty id", what)
	}
	q := table.Get(id).Update(func(row r.Term) any {
		return r.Branch(row.Field(field).Eq(from), map[string]any{field: to}, map[string]any{})
	})
	res, err := c.runWrite(ctx, what, q)
	if err != nil {
		return false, err
	}
	return res.Replaced > 0, nil
}

// RenameDB renames database id from `from` to `to` if its name is still `from`.
func (c *Client) RenameDB(ctx context.Context, id, from, to string) (bool, error) {
	return c.casField(ctx, fmt.Sprintf("rename database %s (%s) to %s", from, id, to), sys("db_config"), id, "name", from, to)
}

// RenameTable renames table id from `from` to `to` if its name is still `from`.
//
// table_config is written with identifier_format "uuid": an update writes
// the whole row back, and in the "name" format the server resolves its db
// and every replica by name (convert_table_config_and_name_from_datum in
// src/clustering/administration/tables/table_config.cc), which fails with
// "… is ambiguous" while a database or server name collides, exactly when
// the agent has collisions to fix.
func (c *Client) RenameTable(ctx context.Context, id, from, to string) (bool, error) {
	return c.casField(ctx, fmt.Sprintf("rename table %s (%s) to %s", from, id, to), sysUUID("table_config"), id, "name", from, to)
}

// MoveTable moves table id from the database fromDBID to toDBID (ids, as
// table_config has them with identifier_format "uuid") if it is still in
// fromDBID; its data stays. The server refuses a missing target or a target
// holding a table of that name.
func (c *Client) MoveTable(ctx context.Context, id, fromDBID, toDBID string) (bool, error) {
	return c.casField(ctx, fmt.Sprintf("move table %s from database %s to %s", id, fromDBID, toDBID), sysUUID("table_config"), id, "db", fromDBID, toDBID)
}

// RenameServer renames server id from `from` to `to` if its name is still
// `from`. The server refuses a name already in use.
func (c *Client) RenameServer(ctx context.Context, id, from, to string) (bool, error) {
	return c.casField(ctx, fmt.Sprintf("rename server %s (%s) to %s", from, id, to), sys("server_config"), id, "name", from, to)
}

// DropDuplicateDBIfEmpty drops database id like DropDBIfEmpty, and only
// while another database still carries the same name: it removes a
// duplicate, never the last database of a name. Two agents that picked
// different duplicates to keep therefore cannot, between them, drop them all
// (short of both deleting within the same instant: RethinkDB has no
// transactions).
func (c *Client) DropDuplicateDBIfEmpty(ctx context.Context, id, name string) (bool, error) {
	return c.dropIfEmpty(ctx, fmt.Sprintf("drop empty duplicate database %s (%s)", name, id), id, name, true)
}

// DropDBIfEmpty drops database id (deletes its db_config row, which drops the
// database and all its tables) only if it is still named name and
// table_config lists no table in it, unavailable tables included.
//
// Both conditions and the delete are one query, but not one atomic step:
// RethinkDB has no transactions across tables. A table created in or moved
// into the database between the count and the delete, by someone else,
// within that one query's run, would be dropped with it. Callers should
// only drop databases that nobody else has reason to write to (e.g. an
// empty duplicate left over from a merge).
func (c *Client) DropDBIfEmpty(ctx context.Context, id, name string) (bool, error) {
	return c.dropIfEmpty(ctx, fmt.Sprintf("drop empty database %s (%s)", name, id), id, name, false)
}

func (c *Client) dropIfEmpty(ctx context.Context, what, id, name string, duplicate bool) (bool, error) {
	if id == "" {
		return false, fmt.Errorf("%s: empty id", what)
	}
	dbRow := sys("db_config").Get(id)
	empty := sysUUID("table_config").Filter(func(t r.Term) r.Term {
		return t.Field("db").Eq(id)
	}).Count().Eq(0)
	// Default catches get_field on a missing (null) row.
	cond := empty.And(dbRow.Field("name").Default(nil).Eq(name))
	if duplicate {
		others := sys("db_config").Filter(func(d r.Term) r.Term {
			return d.Field("name").Eq(name).And(d.Field("id").Ne(id))
		}).Count().Gt(0)
		cond = cond.And(others)
	}
	q := r.Branch(
		cond,
		dbRow.Delete(),
		map[string]any{"deleted": 0, "errors": 0, "skipped": 1},
	)
	res, err := c.runWrite(ctx, what, q)
	if err != nil {
		return false, err
	}
	return res.Deleted > 0, nil
}
