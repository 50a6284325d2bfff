package ike

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// testPKI is a CA and leaf certificates made for one test.
type testPKI struct {
	ca    *x509.Certificate
	caKey crypto.Signer
}

func newTestPKI(t testing.TB) *testPKI {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"espy test"}, CommonName: "espy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &testPKI{ca: ca, caKey: key}
}

// leaf issues a certificate for name with a fresh key of kind "ecdsa",
// "ed25519" or "rsa".
func (p *testPKI) leaf(t testing.TB, name, kind string) (*x509.Certificate, crypto.Signer) {
	var key crypto.Signer
	var err error
	switch kind {
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{Organization: []string{"espy test"}, CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func TestCertificateAuth(t *testing.T) {
	pki := newTestPKI(t)
	for _, c := range []struct{ ini, resp string }{{"ecdsa", "ed25519"}, {"rsa", "ecdsa"}, {"ed25519", "psk"}} {
		t.Run(c.ini+"-"+c.resp, func(t *testing.T) {
			p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
			cert, key := pki.leaf(t, "a.lab.example", c.ini)
			p.iniCfg.Certificates, p.iniCfg.PrivateKey = []*x509.Certificate{cert}, key
			p.respCfg.RootCAs = []*x509.Certificate{pki.ca}
			if c.resp != "psk" {
				cert, key := pki.leaf(t, "b.lab.example", c.resp)
				p.respCfg.Certificates, p.respCfg.PrivateKey = []*x509.Certificate{cert}, key
				p.iniCfg.RootCAs = []*x509.Certificate{pki.ca}
			}
			if err := p.resp.Respond(p.respCfg); err != nil {
				t.Fatal(err)
			}
			sa, err := p.initiate(t)
			if err != nil {
				t.Fatal(err)
			}
			checkEstablished(t, p, sa)
		})
	}
	t.Run("name not in certificate", func(t *testing.T) {
		p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
		cert, key := pki.leaf(t, "c.lab.example", "ecdsa")
		p.iniCfg.Certificates, p.iniCfg.PrivateKey = []*x509.Certificate{cert}, key
		p.respCfg.RootCAs = []*x509.Certificate{pki.ca}
		if err := p.resp.Respond(p.respCfg); err != nil {
			t.Fatal(err)
		}
		_, err := p.initiate(t)
		var ne *NotifyError
		if !errors.As(err, &ne) || ne.Type != message.AUTHENTICATION_FAILED {
			t.Fatalf("got %v, want AUTHENTICATION_FAILED", err)
		}
	})
	t.Run("untrusted CA", func(t *testing.T) {
		p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
		other := newTestPKI(t)
		cert, key := other.leaf(t, "a.lab.example", "ecdsa")
		p.iniCfg.Certificates, p.iniCfg.PrivateKey = []*x509.Certificate{cert}, key
		p.respCfg.RootCAs = []*x509.Certificate{pki.ca}
		if err := p.resp.Respond(p.respCfg); err != nil {
			t.Fatal(err)
		}
		_, err := p.initiate(t)
		var ne *NotifyError
		if !errors.As(err, &ne) || ne.Type != message.AUTHENTICATION_FAILED {
			t.Fatalf("got %v, want AUTHENTICATION_FAILED", err)
		}
	})
	t.Run("PSK where a certificate is required", func(t *testing.T) {
		p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
		p.respCfg.RootCAs = []*x509.Certificate{pki.ca}
		if err := p.resp.Respond(p.respCfg); err != nil {
			t.Fatal(err)
		}
		_, err := p.initiate(t)
		var ne *NotifyError
		if !errors.As(err, &ne) || ne.Type != message.AUTHENTICATION_FAILED {
			t.Fatalf("got %v, want AUTHENTICATION_FAILED", err)
		}
	})
}

// TestCertReq checks the CERTREQ authority: the SHA-1 of each root's
// SubjectPublicKeyInfo (RFC 7296 3.7), and none for a PSK configuration.
func TestCertReq(t *testing.T) {
	a, b := newTestPKI(t), newTestPKI(t)
	ini, _ := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	ini.RootCAs = []*x509.Certificate{a.ca, b.ca}
	c, err := ini.validate()
	if err != nil {
		t.Fatal(err)
	}
	cr, ok := certReqPayload(c).(*message.CertReq)
	ha, hb := sha1.Sum(a.ca.RawSubjectPublicKeyInfo), sha1.Sum(b.ca.RawSubjectPublicKeyInfo)
	if !ok || cr.Encoding != message.CertX509Signature || string(cr.Authority) != string(ha[:])+string(hb[:]) {
		t.Fatalf("CERTREQ %+v", cr)
	}
	ini.RootCAs = nil
	if c, _ := ini.validate(); certReqPayload(c) != nil {
		t.Fatal("CERTREQ for a PSK configuration")
	}
}
