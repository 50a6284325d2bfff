package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike"
)

// writeSelfSigned writes a self-signed ECDSA certificate and its PKCS#8
// key as PEM files in dir and returns their paths.
func writeSelfSigned(t *testing.T, dir, name string) (certPath, keyPath string, key crypto.Signer) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	for path, b := range map[string]*pem.Block{certPath: {Type: "CERTIFICATE", Bytes: der}, keyPath: {Type: "PRIVATE KEY", Bytes: p8}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certPath, keyPath, k
}

// TestCredentialChains loads auth.chains, signature_auth and allow_sha1
// into Credentials, and refuses incomplete chains and unknown policies at
// their line.
func TestCredentialChains(t *testing.T) {
	dir := t.TempDir()
	c1, k1, _ := writeSelfSigned(t, dir, "one")
	c2, k2, key2 := writeSelfSigned(t, dir, "two")
	parse := func(auth string) (*Config, error) {
		return Parse("c.yaml", []byte(strings.Replace(tunnelYAML, "{psk_file: /etc/espy/t1.psk}", auth, 1)))
	}
	c, err := parse("{cert: " + c1 + ", key: " + k1 + ", ca: " + c1 + ", chains: [{cert: " + c2 + ", key: " + k2 + "}], signature_auth: legacy, allow_sha1: true}")
	if err != nil {
		t.Fatal(err)
	}
	cr, err := c.Credentials(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.Chains) != 1 || cr.Chains[0].Certificates[0].Subject.CommonName != "two" || !key2.Public().(*ecdsa.PublicKey).Equal(cr.Chains[0].PrivateKey.Public()) ||
		cr.SignatureAuth != ike.SignatureAuthLegacy || !cr.AllowSHA1Auth {
		t.Fatalf("credentials %+v", cr)
	}
	// The defaults: no chains, auto, no SHA-1.
	c, err = parse("{cert: " + c1 + ", key: " + k1 + ", ca: " + c1 + "}")
	if err != nil {
		t.Fatal(err)
	}
	if cr, err = c.Credentials(0); err != nil || cr.Chains != nil || cr.SignatureAuth != ike.SignatureAuthAuto || cr.AllowSHA1Auth {
		t.Fatalf("defaults %+v, %v", cr, err)
	}
	for _, tt := range []struct{ auth, want string }{
		{"{cert: " + c1 + ", key: " + k1 + ", ca: " + c1 + ", chains: [{cert: " + c2 + "}]}", "c.yaml:5: a chain needs cert and key"},
		{"{cert: " + c1 + ", key: " + k1 + ", ca: " + c1 + ", signature_auth: sha1}", `c.yaml:5: signature_auth "sha1"`},
	} {
		if _, err := parse(tt.auth); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.auth, err, tt.want)
		}
	}
	c, err = parse("{cert: " + c1 + ", key: " + k1 + ", ca: " + c1 + ", chains: [{cert: " + c2 + ", key: " + filepath.Join(dir, "missing") + "}]}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Credentials(0); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing chain key: %v", err)
	}
}
