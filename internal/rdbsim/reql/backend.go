package reql

import (
	"context"
	"fmt"
)

// ErrorKind is the response type of a failed query (ql2 Response.ResponseType).
type ErrorKind int

// Response types for errors, as in ql2.
const (
	ClientError  ErrorKind = 16
	CompileError ErrorKind = 17
	RuntimeError ErrorKind = 18
)

// ErrorType is the runtime error sub-type (ql2 Response.ErrorType).
type ErrorType int

// Runtime error types, as in ql2.
const (
	ErrInternal        ErrorType = 1000000
	ErrResourceLimit   ErrorType = 2000000
	ErrQueryLogic      ErrorType = 3000000
	ErrNonExistence    ErrorType = 3100000
	ErrOpFailed        ErrorType = 4100000
	ErrOpIndeterminate ErrorType = 4200000
	ErrUser            ErrorType = 5000000
	ErrPermissionError ErrorType = 6000000
)

// Error is a query error as the server reports it to the client.
type Error struct {
	Kind ErrorKind
	Type ErrorType // only for RuntimeError
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// OpFailed returns a runtime OP_FAILED error, the type a real server uses for
// missing and ambiguous databases and tables.
func OpFailed(format string, a ...any) *Error {
	return &Error{Kind: RuntimeError, Type: ErrOpFailed, Msg: fmt.Sprintf(format, a...)}
}

// QueryLogic returns a runtime QUERY_LOGIC error.
func QueryLogic(format string, a ...any) *Error {
	return &Error{Kind: RuntimeError, Type: ErrQueryLogic, Msg: fmt.Sprintf(format, a...)}
}

// DBInfo names one database.
type DBInfo struct {
	ID   string
	Name string
}

// TableOpts are the optargs of r.table / r.db(...).table(...).
type TableOpts struct {
	// IdentifierFormat is "name" (default) or "uuid"; it only changes system tables.
	IdentifierFormat string
}

// TableCreateOpts are the optargs of tableCreate that the sim honours.
type TableCreateOpts struct {
	PrimaryKey string // default "id"
}

// WriteSummary is the per-table result of a write; the evaluator sums them
// into the write response object.
type WriteSummary struct {
	Inserted, Replaced, Unchanged, Deleted, Skipped, Errors int
	FirstError                                              string
	GeneratedKeys                                           []string
	// Changes holds {old_val,new_val} pairs when return_changes was asked.
	Changes []map[string]any
}

// Stream is a lazily produced sequence: a table scan or a changefeed.
type Stream interface {
	// Next returns the next batch. For a changefeed it blocks until at least
	// one change is available or ctx ends. more is false after the last batch.
	Next(ctx context.Context) (batch []any, more bool, err error)
	// Feed reports whether this stream is a changefeed (SEQUENCE_FEED note).
	Feed() bool
	Close() error
}

// Backend is the node behind the evaluator: the cluster view of one server or
// proxy. Names are resolved here, so ambiguity and non-existence errors carry
// the real server's messages ("Database `x` does not exist.", "Database `x`
// is ambiguous; there are multiple databases with that name.").
type Backend interface {
	// DBs lists the user databases visible to this node (not "rethinkdb").
	DBs(ctx context.Context) ([]DBInfo, error)
	// DBCreate creates a database and returns its db_config row.
	DBCreate(ctx context.Context, name string) (map[string]any, error)
	// DBDrop drops a database with its tables; it returns the old db_config
	// row and the number of tables dropped.
	DBDrop(ctx context.Context, name string) (old map[string]any, tables int, err error)
	// TableList lists the table names of db.
	TableList(ctx context.Context, db string) ([]string, error)
	// TableCreate creates a table and returns its table_config row.
	TableCreate(ctx context.Context, db, name string, opts TableCreateOpts) (map[string]any, error)
	// TableDrop drops a table and returns its old table_config row.
	TableDrop(ctx context.Context, db, name string) (map[string]any, error)
	// Table resolves a user table, or a system table when db is "rethinkdb".
	Table(ctx context.Context, db, name string, opts TableOpts) (Table, error)
	// ServerInfo answers the SERVER_INFO query: id, name and proxy flag.
	ServerInfo(ctx context.Context) (map[string]any, error)
}

// Table is one user or system table.
type Table interface {
	// DB and Name are the names used in error messages.
	DB() string
	Name() string
	PrimaryKey() string
	// Get returns the document with that primary key, or nil.
	Get(ctx context.Context, key any) (any, error)
	// Scan returns every document.
	Scan(ctx context.Context) ([]any, error)
	// Insert inserts documents that already carry their primary key;
	// conflict is "error", "replace" or "update".
	Insert(ctx context.Context, docs []map[string]any, conflict string) (WriteSummary, error)
	// Modify replaces the document at key with f(old). old is nil when the
	// document does not exist; f returning nil deletes it. The backend must
	// not hold a lock while calling f (f may read other tables). Writes that
	// the table refuses (system tables) come back as Errors/FirstError in the
	// summary, not as an error; an error is reserved for failures that abort
	// the whole query.
	Modify(ctx context.Context, key any, f func(old any) (any, error)) (WriteSummary, error)
	// Changes opens a changefeed on the table: a Stream of
	// {"new_val":…, "old_val":…} objects, preceded by {"new_val":doc} for
	// every current document when includeInitial is true.
	Changes(ctx context.Context, includeInitial bool) (Stream, error)
}
