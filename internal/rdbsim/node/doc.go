// Package node is one rethinkdb-sim process: a server or a proxy. It keeps
// the server's identity and data in its data directory, meshes with its peers
// over the cluster port, computes the system tables and implements
// reql.Backend for the driver port.
//
// # What it reproduces (RethinkDB 2.4.4, see e2e/testdata/rethinkdb-2.4.4)
//
//   - Identity: a new data directory gets a server UUID, a name (--server-name
//     or host name plus a random suffix), the tags "default" plus
//     --server-tag, and a `test` database unless started with --join or
//     created with `rethinkdb create`. Everything is persisted (JSON files
//     renamed into place); a later --server-name is ignored with the real
//     warning. Peer addresses are kept in memory only.
//   - Cluster: every node dials every peer it learns of, so a proxy joined to
//     one node of each of two clusters produces a full mesh. A lost server is
//     redialled with backoff (50 ms doubling to 15 s) until
//     --cluster-reconnect-timeout; a restarted node knows only its --join
//     list, so after a full restart a node without --join stays alone. A
//     different server id answering at a lost peer's address is refused and
//     logged. A server with --join opens its driver port only once it has
//     reached the cluster. The log lines are the real server's.
//   - Metadata (databases, tables, server names and tags, admin password) is
//     a last-writer-wins semilattice with tombstones: both sides of a merge
//     keep their objects, so equal names become collisions, and renames and
//     drops made anywhere reach every connected node.
//   - A table's documents live on its primary replica (the server it was
//     created on; a proxy picks the connected server with the smallest
//     name). Other nodes forward reads and writes to it. When the primary is
//     not connected, the table is unavailable: the table_config row becomes
//     the error form, current_issues has a table_availability issue, and
//     operations fail.
//   - System tables server_config, server_status, db_config, table_config,
//     table_status, current_issues (db/table/server name collisions and
//     table_availability), cluster_config and users, in the recorded shapes,
//     with identifier_format "uuid"; the writes the agent uses (renames,
//     moving a table between databases, dropping/creating a database through
//     db_config) with the real refusals. Changefeeds on every table.
//
// # What it does not do
//
//   - No replication, sharding or failover: a table has exactly one replica,
//     its primary; shards, replicas, write_acks and durability changes in
//     table_config are accepted and ignored. reconfigure/rebalance do not
//     exist.
//   - No secondary indexes (indexes is always []), no write hooks.
//   - No users other than admin, no permissions; jobs, logs, stats and
//     permissions are empty tables.
//   - No Raft: concurrent conflicting metadata writes on two nodes are
//     resolved by last writer wins, not refused.
//   - The wire format between sims is private (length-prefixed JSON); a sim
//     cannot talk to a real RethinkDB server, and it is not checked against
//     one at the byte level.
//   - Issue ids are deterministic UUIDv5 values but not the real server's
//     ones; the operation error for an unavailable table is the 2.x "primary
//     replica for shard … not available" wording, which the recordings do
//     not show.
//   - The HTTP admin port serves one static page.
//   - Data is rewritten as a whole JSON file per table on every write: fine
//     for tests, not for volume.
package node
