package mdns

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// TXT keys. The record is self-contained: it carries the cluster port and
// the addresses too (the SRV and A records say the same for other mDNS
// implementations), so that the signature covers everything a peer joins.
const (
	keyVersion = "txtvers" // format version, "1"
	keyID      = "id"      // server uuid
	keyName    = "name"    // server name (informative)
	keyCluster = "cluster" // cluster name; absent when the agent has none
	keyPort    = "port"    // cluster port
	keyDriver  = "driver"  // driver port
	keyAddrs   = "addrs"   // comma-separated IPs of the cluster endpoint
	keyAgent   = "agent"   // agent version (informative)
	keySig     = "sig"     // hex HMAC-SHA256 over every other entry
)

const txtVersion = "1"

// maxTXTString is the longest character-string a TXT record can hold.
const maxTXTString = 255

// sigContext separates these signatures from any other use of the secret.
const sigContext = "rethinkdb-agent/mdns/txt/v1"

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Record is what a node announces in its TXT record.
type Record struct {
	ServerID   string
	Name       string
	Cluster    string
	Port       int // cluster port
	DriverPort int // 0 when not announced
	Addrs      []netip.Addr
	Agent      string // agent version

	// Signature is the hex HMAC from the record, "" when unsigned.
	Signature string
	// signed holds the entries the signature covers, as received.
	signed []string
}

// FieldError is a malformed TXT record: Field names the key at fault.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return fmt.Sprintf("TXT field %q: %v", e.Field, e.Err) }
func (e *FieldError) Unwrap() error { return e.Err }

// Errors of Verify.
var (
	ErrUnsigned     = errors.New("announcement is not signed")
	ErrBadSignature = errors.New("announcement signature does not verify")
)

// Encode returns the TXT strings for r, signed when secret is not empty.
// An entry that does not fit in a TXT string is an error naming it.
func (r Record) Encode(secret []byte) ([]string, error) {
	addrs := make([]string, len(r.Addrs))
	for i, a := range r.Addrs {
		addrs[i] = a.String()
	}
	txt := []string{keyVersion + "=" + txtVersion, keyID + "=" + r.ServerID}
	if r.Name != "" {
		txt = append(txt, keyName+"="+r.Name)
	}
	if r.Cluster != "" {
		txt = append(txt, keyCluster+"="+r.Cluster)
	}
	txt = append(txt, keyPort+"="+strconv.Itoa(r.Port))
	if r.DriverPort != 0 {
		txt = append(txt, keyDriver+"="+strconv.Itoa(r.DriverPort))
	}
	txt = append(txt, keyAddrs+"="+strings.Join(addrs, ","))
	if r.Agent != "" {
		txt = append(txt, keyAgent+"="+r.Agent)
	}
	for _, s := range txt {
		if len(s) > maxTXTString {
			k, _, _ := strings.Cut(s, "=")
			return nil, &FieldError{Field: k, Err: fmt.Errorf("%d bytes, more than a TXT string holds (%d)", len(s), maxTXTString)}
		}
	}
	if len(secret) > 0 {
		txt = append(txt, keySig+"="+sign(secret, txt))
	}
	return txt, nil
}

// sign is the hex HMAC-SHA256 of the entries, sorted, each prefixed by its
// length (so that no two lists of entries serialize alike).
func sign(secret []byte, entries []string) string {
	sorted := slices.Clone(entries)
	slices.Sort(sorted)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(sigContext))
	var n [2]byte
	for _, e := range sorted {
		binary.BigEndian.PutUint16(n[:], uint16(len(e)))
		mac.Write(n[:])
		mac.Write([]byte(e))
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// Verify checks r's signature against secret: ErrUnsigned when r has none,
// ErrBadSignature when it does not match.
func (r Record) Verify(secret []byte) error {
	if r.Signature == "" {
		return ErrUnsigned
	}
	want, err := hex.DecodeString(sign(secret, r.signed))
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(r.Signature)
	if err != nil || !hmac.Equal(got, want) {
		return ErrBadSignature
	}
	return nil
}

// ParseTXT parses the TXT strings of an announcement. Keys are
// case-insensitive (RFC 6763 §6.4); unknown keys are kept under the
// signature but otherwise ignored, so later versions can add fields; empty
// strings are skipped. Required: txtvers=1, id, port, addrs. A malformed
// entry is a *FieldError naming the key.
func ParseTXT(txt []string) (Record, error) {
	var r Record
	seen := map[string]bool{}
	for _, s := range txt {
		if s == "" {
			continue
		}
		k, v, hasValue := strings.Cut(s, "=")
		k = strings.ToLower(k)
		if k == "" {
			return Record{}, &FieldError{Field: s, Err: errors.New("entry without a key")}
		}
		known := true
		switch k {
		case keyVersion, keyID, keyName, keyCluster, keyPort, keyDriver, keyAddrs, keyAgent, keySig:
		default:
			known = false
		}
		if !known {
			if !utf8.ValidString(k) {
				return Record{}, &FieldError{Field: strconv.Quote(k), Err: errors.New("key is not UTF-8")}
			}
			r.signed = append(r.signed, s)
			continue
		}
		if !hasValue {
			return Record{}, &FieldError{Field: k, Err: errors.New("no value (want key=value)")}
		}
		if seen[k] {
			return Record{}, &FieldError{Field: k, Err: errors.New("given twice")}
		}
		seen[k] = true
		if k != keySig {
			r.signed = append(r.signed, s)
		}
		if err := r.set(k, v); err != nil {
			return Record{}, &FieldError{Field: k, Err: err}
		}
	}
	for _, k := range []string{keyVersion, keyID, keyPort, keyAddrs} {
		if !seen[k] {
			return Record{}, &FieldError{Field: k, Err: errors.New("missing")}
		}
	}
	return r, nil
}

func (r *Record) set(k, v string) error {
	switch k {
	case keyVersion:
		if v != txtVersion {
			return fmt.Errorf("unsupported version %q (this agent reads %s)", v, txtVersion)
		}
	case keyID:
		id := strings.ToLower(v)
		if !uuidRE.MatchString(id) {
			return fmt.Errorf("%q is not a server uuid", v)
		}
		r.ServerID = id
	case keyName:
		return text(&r.Name, v)
	case keyCluster:
		if v == "" {
			return errors.New("empty (omit it instead)")
		}
		return text(&r.Cluster, v)
	case keyAgent:
		return text(&r.Agent, v)
	case keyPort, keyDriver:
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != v {
			return fmt.Errorf("%q is not a port", v)
		}
		if k == keyPort {
			r.Port = n
		} else {
			r.DriverPort = n
		}
	case keyAddrs:
		if v == "" {
			return errors.New("no address")
		}
		for _, s := range strings.Split(v, ",") {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" || a.String() != s {
				return fmt.Errorf("%q is not an IP address", s)
			}
			if a.IsUnspecified() || a.IsMulticast() {
				return fmt.Errorf("%s cannot be a peer's address", s)
			}
			if slices.Contains(r.Addrs, a) {
				return fmt.Errorf("%s given twice", s)
			}
			r.Addrs = append(r.Addrs, a)
		}
	case keySig:
		if len(v) != 2*sha256.Size {
			return fmt.Errorf("%d characters, want %d hex digits", len(v), 2*sha256.Size)
		}
		if _, err := hex.DecodeString(v); err != nil {
			return errors.New("not hex")
		}
		r.Signature = strings.ToLower(v)
	}
	return nil
}

// text stores v if it is printable UTF-8.
func text(dst *string, v string) error {
	if !utf8.ValidString(v) {
		return errors.New("not UTF-8")
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("control character %U", c)
		}
	}
	*dst = v
	return nil
}
