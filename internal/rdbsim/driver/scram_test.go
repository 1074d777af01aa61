package driver_test

import (
	"bufio"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// scramHandshake is a minimal client side of the V1_0 handshake, for raw
// protocol tests (the real client is exercised in TestHandshake).
func scramHandshake(c net.Conn, r *bufio.Reader, user, password string) error {
	nonce := "rawclientnonce"
	first := fmt.Sprintf(`{"protocol_version":0,"authentication_method":"SCRAM-SHA-256","authentication":"n,,n=%s,r=%s"}`, user, nonce)
	msg := binary.LittleEndian.AppendUint32(nil, 0x34c2bdc3)
	msg = append(append(msg, first...), 0)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	read := func() (map[string]any, error) {
		line, err := r.ReadBytes(0)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(line[:len(line)-1], &m); err != nil {
			return nil, err
		}
		if m["success"] != true {
			return nil, fmt.Errorf("handshake: %v", m)
		}
		return m, nil
	}
	if _, err := read(); err != nil {
		return err
	}
	sf, err := read()
	if err != nil {
		return err
	}
	serverFirst := sf["authentication"].(string)
	attrs := map[string]string{}
	for _, p := range strings.Split(serverFirst, ",") {
		attrs[p[:1]] = p[2:]
	}
	salt, _ := base64.StdEncoding.DecodeString(attrs["s"])
	iter, _ := strconv.Atoi(attrs["i"])
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	if err != nil {
		return err
	}
	withoutProof := "c=biws,r=" + attrs["r"]
	authMsg := "n=" + user + ",r=" + nonce + "," + serverFirst + "," + withoutProof
	mac := func(k []byte, s string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(s)); return h.Sum(nil) }
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	sig := mac(stored[:], authMsg)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	final := fmt.Sprintf(`{"authentication":"%s,p=%s"}`, withoutProof, base64.StdEncoding.EncodeToString(proof))
	if _, err := c.Write(append([]byte(final), 0)); err != nil {
		return err
	}
	_, err = read()
	return err
}
