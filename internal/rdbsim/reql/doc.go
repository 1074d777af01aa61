// Package reql evaluates the subset of ReQL that rethinkdb-sim supports.
//
// The evaluator knows nothing about clusters: everything it reads or writes
// goes through a Backend, which the node package implements. Datums are the
// plain Go values that encoding/json produces: nil, bool, float64, string,
// []any and map[string]any (times are the TIME pseudo-type object).
//
// # Supported subset
//
// rethinkdb-sim evaluates only the terms below. Any other term fails with a
// runtime error naming it, e.g. "rethinkdb-sim: term GROUP (144) is not
// supported", so that a gap shows up as a failing query and never as a
// wrong answer. Optional arguments not named below are ignored (read_mode,
// durability, shards, replicas, ...), except a few that would change a
// result, which are refused by name (getAll/orderBy/min/max index other
// than the primary key, slice bounds, union options, changes options other
// than include_initial and squash).
//
// Databases and tables: db, table (identifier_format "name" or "uuid"),
// dbCreate, dbDrop, dbList (each name once, plus "rethinkdb"), tableCreate
// (primary_key), tableDrop, tableList, config (of a db or a table).
//
// Selections and reads: get, getAll (primary key only), filter (function,
// object or constant predicate; default optarg).
//
// Writes, with the real server's summary object {deleted, errors,
// inserted, replaced, skipped, unchanged} plus first_error, generated_keys
// and changes (return_changes) when they apply: insert (conflict "error",
// "replace" or "update"; missing primary keys get a random UUID), update
// (object or function; an error computing one row counts in errors, a
// missing row is skipped), replace, delete, forEach (sums the write results
// of its function).
//
// Sequences: map (one sequence), concatMap, count (with a value or a
// predicate), limit, skip, slice (no bound options), nth, bracket,
// getField, pluck and without (names, arrays and nested selectors),
// hasFields (names), orderBy (fields, functions, r.asc/r.desc; index only
// on the primary key), distinct, union, isEmpty, contains, sum, avg, min,
// max (field or function, no index), range, coerceTo.
//
// Objects and arrays: keys, values, merge (objects and functions, nested
// objects merged), append, prepend, object, makeArray, makeObj, r.args.
//
// Control and values: r.do (funcall), branch, default (catches
// non-existence errors and null), error (USER error), and, or, not, eq,
// ne, lt, le, gt, ge (ReQL ordering across types), add (numbers, strings,
// arrays, time + seconds), sub, mul, div, mod, floor, ceil, round, typeOf,
// coerceTo ('string', 'number', 'array', 'object', 'bool'), split, match
// (Go RE2 syntax), upcase, downcase, uuid (no argument), now, epochTime,
// toEpochTime, toJSON, json, r.row (IMPLICIT_VAR) and functions.
//
// Changefeeds: changes (include_initial, squash ignored) on a table, on a
// get (ATOM_FEED) and on a filter of either; a feed can be followed by
// filter, map, pluck, merge, getField and limit.
//
// Not supported, among others: group/ungroup, reduce, fold, joins, between,
// secondary indexes, geo, binary, r.literal, r.js, r.http, time zones and
// the other time functions, grant, wait, reconfigure, rebalance, sync.
package reql
