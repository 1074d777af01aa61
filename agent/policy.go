package agent

import (
	"fmt"
	"strings"
)

// Policy says how name collisions are resolved (--collisions).
type Policy string

// The collision policies.
const (
	// PolicySafe drops an empty duplicate database, lets the database or
	// table of the larger side keep its name and renames the others to
	// name_<first block of uuid>; a server newcomer is renamed likewise.
	PolicySafe Policy = "safe"
	// PolicyMerge moves the tables of a duplicate database into the one that
	// keeps the name when their table names do not clash, then drops the
	// emptied duplicate; otherwise it falls back to PolicySafe.
	PolicyMerge Policy = "merge"
	// PolicyRenameAll renames every colliding object, as the blog post does.
	PolicyRenameAll Policy = "rename-all"
	// PolicyReport changes nothing: it logs and reports what it would do.
	PolicyReport Policy = "report"
)

// ParsePolicy parses a --collisions value.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(strings.TrimSpace(s)); p {
	case PolicySafe, PolicyMerge, PolicyRenameAll, PolicyReport:
		return p, nil
	}
	return "", fmt.Errorf("--collisions: unknown policy %q (want safe, merge, rename-all or report)", s)
}

// String implements flag.Value.
func (p Policy) String() string { return string(p) }
