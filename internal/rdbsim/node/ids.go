package node

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand never fails on Linux; a zero UUID would be a bug
		// worth noticing rather than a silent collision.
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// issueNamespace is the UUIDv5 namespace of the sim's issue ids. The real
// server also derives issue ids deterministically (version 5), so the same
// issue keeps its id on every server and across polls.
var issueNamespace = [16]byte{0x5a, 0x1d, 0x3e, 0x0c, 0x7b, 0x11, 0x4e, 0x2a, 0x9f, 0x43, 0x61, 0x0d, 0x27, 0xc8, 0x35, 0xee}

// uuidV5 returns the name-based (SHA-1, version 5) UUID of name.
func uuidV5(name string) string {
	h := sha1.New()
	h.Write(issueNamespace[:])
	h.Write([]byte(name))
	var b [16]byte
	copy(b[:], h.Sum(nil))
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// issueID is the deterministic id of an issue of type typ about ids.
func issueID(typ string, ids ...string) string {
	s := append([]string(nil), ids...)
	sort.Strings(s)
	return uuidV5(typ + ":" + strings.Join(s, ","))
}

func formatUUID(b [16]byte) string {
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func isUUID(s string) bool { return uuidRE.MatchString(s) }

// Names of servers are [A-Za-z0-9_]; databases and tables also allow '-'.
var (
	serverNameRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	dbNameRE     = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

func validServerName(s string) bool { return serverNameRE.MatchString(s) }
func validDBName(s string) bool     { return dbNameRE.MatchString(s) }

// generatedServerName derives a server name from the host name as the real
// server does when --server-name is absent: the host name with every
// character outside [A-Za-z0-9_] replaced, plus a random suffix.
func generatedServerName(hostname string) string {
	var sb strings.Builder
	for _, r := range hostname {
		if r < 128 && (r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	if sb.Len() == 0 {
		sb.WriteString("rethinkdb")
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return sb.String() + "_" + hex.EncodeToString(b[:])
}
