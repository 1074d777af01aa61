package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeTLS writes a CA and a certificate it signed into dir.
func writeTLS(t *testing.T, dir string) (key, cert, ca string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sim-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	key, cert, ca = filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "ca.pem")
	for path, blk := range map[string]*pem.Block{
		key: {Type: "EC PRIVATE KEY", Bytes: kb}, cert: {Type: "CERTIFICATE", Bytes: der}, ca: {Type: "CERTIFICATE", Bytes: caDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return key, cert, ca
}

func TestClusterTLS(t *testing.T) {
	key, cert, ca := writeTLS(t, t.TempDir())
	withTLS := func(c Config) Config {
		c.ClusterTLSKey, c.ClusterTLSCert, c.ClusterTLSCA = key, cert, ca
		return c
	}
	s1 := startReady(t, withTLS(serverCfg(t, dir(t, "s1"), "server_1")))
	s2 := startReady(t, withTLS(serverCfg(t, dir(t, "s2"), "server_2", s1)))
	meshed(t, s1, s2)

	// A plain-TCP node cannot join a TLS cluster: it never gets ready.
	plain := start(t, serverCfg(t, dir(t, "plain"), "plain", s1))
	if plain.log.index("Connected to server") >= 0 || s1.connectedTo(plain.ID()) {
		t.Fatal("plain node connected to a TLS cluster")
	}

	if _, err := New(Config{Directory: dir(t, "bad"), ClusterTLSKey: key}); err == nil {
		t.Error("a partial TLS trio was accepted")
	}
}
