package driver

import (
	"bufio"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// SCRAM iteration count of the real server's stored passwords.
const scramIterations = 4096

// authError is a handshake failure with the real server's error code
// (10 invalid encoding, 12 wrong password, 17 unknown user, 20 other).
type authError struct {
	code int
	msg  string
}

func (e *authError) Error() string { return e.msg }

// readNulJSON reads one NUL-terminated JSON message of the handshake.
func readNulJSON(r *bufio.Reader, v any) error {
	line, err := r.ReadBytes(0)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(line[:len(line)-1], v); err != nil {
		return &authError{10, "Invalid encoding"}
	}
	return nil
}

func writeNulJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, 0))
	return err
}

// splitAttrs parses "k=v,k=v" SCRAM attributes.
func splitAttrs(s string) (map[byte]string, error) {
	out := map[byte]string{}
	for _, part := range strings.Split(s, ",") {
		if len(part) < 2 || part[1] != '=' {
			return nil, &authError{10, "Invalid encoding"}
		}
		if _, dup := out[part[0]]; dup {
			return nil, &authError{10, "Invalid encoding"}
		}
		out[part[0]] = part[2:]
	}
	return out, nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// saltedPassword returns a salt and the PBKDF2 hash of password, cached
// so that connections do not pay for 4096 iterations each time.
func (s *Server) saltedPassword(password string) (salt, hash []byte, err error) {
	s.saltMu.Lock()
	defer s.saltMu.Unlock()
	if c, ok := s.salts[password]; ok {
		return c.salt, c.hash, nil
	}
	salt = make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, nil, err
	}
	hash, err = pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return nil, nil, err
	}
	if len(s.salts) > 16 {
		clear(s.salts)
	}
	s.salts[password] = saltEntry{salt, hash}
	return salt, hash, nil
}

type saltEntry struct{ salt, hash []byte }

// handshakeV1 runs the V1_0 handshake after the magic number: the server
// version message, then SCRAM-SHA-256 for user admin.
func (s *Server) handshakeV1(r *bufio.Reader, w io.Writer) error {
	if err := writeNulJSON(w, map[string]any{
		"success":              true,
		"min_protocol_version": 0,
		"max_protocol_version": 0,
		"server_version":       ServerVersion,
	}); err != nil {
		return err
	}
	err := s.scram(r, w)
	if ae, ok := err.(*authError); ok {
		_ = writeNulJSON(w, map[string]any{"success": false, "error": ae.msg, "error_code": ae.code})
	}
	return err
}

func (s *Server) scram(r *bufio.Reader, w io.Writer) error {
	var first struct {
		ProtocolVersion      *int   `json:"protocol_version"`
		AuthenticationMethod string `json:"authentication_method"`
		Authentication       string `json:"authentication"`
	}
	if err := readNulJSON(r, &first); err != nil {
		return err
	}
	if first.ProtocolVersion == nil || *first.ProtocolVersion != 0 {
		return &authError{20, "Unsupported protocol version, expected 0."}
	}
	if first.AuthenticationMethod != "SCRAM-SHA-256" {
		return &authError{20, fmt.Sprintf("Unsupported authentication method %q.", first.AuthenticationMethod)}
	}
	if !strings.HasPrefix(first.Authentication, "n,") {
		return &authError{15, "Channel binding is not supported"}
	}
	i := strings.Index(first.Authentication[2:], ",")
	if i < 0 {
		return &authError{10, "Invalid encoding"}
	}
	clientFirstBare := first.Authentication[2+i+1:]
	attrs, err := splitAttrs(clientFirstBare)
	if err != nil {
		return err
	}
	user, okUser := attrs['n']
	clientNonce, okNonce := attrs['r']
	if !okUser || !okNonce || len(attrs) != 2 {
		return &authError{10, "Invalid encoding"}
	}
	known := user == "admin"
	password := ""
	if known && s.cfg.Password != nil {
		password = s.cfg.Password()
	}
	if !known {
		// Like the real server, go on with a made-up password and fail at
		// the last step, so the exchange looks the same for every user.
		password = "unknown-user-" + newNonce()
	}
	salt, salted, err := s.saltedPassword(password)
	if err != nil {
		return err
	}
	nonce := clientNonce + newNonce()
	serverFirst := "r=" + nonce + ",s=" + base64.StdEncoding.EncodeToString(salt) + fmt.Sprintf(",i=%d", scramIterations)
	if err := writeNulJSON(w, map[string]any{"success": true, "authentication": serverFirst}); err != nil {
		return err
	}

	var final struct {
		Authentication string `json:"authentication"`
	}
	if err := readNulJSON(r, &final); err != nil {
		return err
	}
	if !known {
		return &authError{17, "Unknown user"}
	}
	fattrs, err := splitAttrs(final.Authentication)
	if err != nil {
		return err
	}
	if fattrs['c'] != "biws" {
		return &authError{10, "Invalid encoding"}
	}
	if fattrs['r'] != nonce {
		return &authError{20, "Other error"}
	}
	proof, err := base64.StdEncoding.DecodeString(fattrs['p'])
	if err != nil {
		return &authError{10, "Invalid encoding"}
	}
	cut := strings.Index(final.Authentication, ",p=")
	if cut < 0 {
		return &authError{10, "Invalid encoding"}
	}
	withoutProof := final.Authentication[:cut]
	authMsg := clientFirstBare + "," + serverFirst + "," + withoutProof
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	sig := hmacSHA256(storedKey[:], authMsg)
	want := make([]byte, len(clientKey))
	for i := range clientKey {
		want[i] = clientKey[i] ^ sig[i]
	}
	if subtle.ConstantTimeCompare(want, proof) != 1 {
		return &authError{12, "Wrong password"}
	}
	serverSig := hmacSHA256(hmacSHA256(salted, "Server Key"), authMsg)
	return writeNulJSON(w, map[string]any{"success": true, "authentication": "v=" + base64.StdEncoding.EncodeToString(serverSig)})
}

func newNonce() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
