// Package agent is rethinkdb-agent's reconcile loop.
//
// Each pass observes the local node's cluster (through the node's driver
// port) and the peers that discovery reports, decides whether some peer is
// outside the local cluster, and acts: it bridges the clusters through one
// temporary `rethinkdb proxy`, waits until every server is connected to every
// other, resolves the name collisions that the merge created, and stops the
// proxy.
//
// Several agents usually see the same split, so who acts is decided
// deterministically, with fallbacks so that a silent chooser cannot block a
// merge:
//   - between clusters, the side whose lowest discovered cluster endpoint
//     sorts first acts; the other side waits FallbackAfter;
//   - inside a cluster, the agent of the server with the lowest id acts; the
//     others wait one FallbackStep more per rank.
//
// Collision fixes never delete anything that holds a table or a document, and
// every write is conditional on the name it expects, so two agents racing
// cannot rename twice (no `app_x_x`).
package agent
